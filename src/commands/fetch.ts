/**
 * Reads a server's COMMAND reply for the command table. Every process start reads it, and it is
 * large (about 240 commands, their subcommands and key specs: some 85 KB, tens of thousands of
 * elements). Parsed as RESP by a client library in a process that has just started, it cost
 * about 40 ms of CPU, a sixth of a proxy's start (bench/startup.mjs). So the server is asked
 * to encode it as JSON in a script (`cjson`, in every Redis and Valkey with scripting), which
 * JSON.parse reads in about a millisecond; where scripts are refused (ACL, a managed service, a
 * busy script), the plain COMMAND reply serves, as it did before.
 *
 * The script's conversion changes two things, undone here so that both ways give the table the
 * same input: a status reply (a flag such as `write`) becomes `{"ok": "write"}`, and an empty
 * array becomes `{}` (Lua has one table type for both). RESP2 maps arrive as flat arrays either
 * way, and COMMAND's reply holds no nulls or errors.
 */
import type { Redis } from 'ioredis';

const SCRIPT = "return cjson.encode(redis.call('COMMAND'))";

/** The COMMAND reply of the server `c` is connected to, as arrays of strings and numbers. */
export async function commandReply(c: Redis): Promise<unknown[]> {
  let reply: unknown = null;
  try {
    const json = await c.call('EVAL', SCRIPT, '0');
    if (typeof json === 'string') reply = fromScript(JSON.parse(json));
  } catch {
    // Refused (NOPERM, a script already running, scripting disabled...), or not JSON.
  }
  // Anything but an array would be a server that answers the script in a way not known here.
  return Array.isArray(reply) ? reply : ((await c.call('COMMAND')) as unknown[]);
}

/** The script's JSON back to what the RESP reply says. */
export function fromScript(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromScript);
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) return [];
    if (keys.length === 1 && keys[0] === 'ok') return (v as { ok: unknown }).ok;
    return v;
  }
  return v;
}
