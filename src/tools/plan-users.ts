/**
 * `plan`'s users check: the users the applications log in as on the old server must exist on the
 * new one, since once keys move every client's commands (and its AUTH) run on the new server.
 *
 *   ACL on both      ACL LIST on both servers: users of the old server missing on the new one are
 *                    named (FAIL when clients are logged in as one of them right now, per CLIENT
 *                    LIST; WARN otherwise); users on both whose rules differ are a WARN
 *   no ACL access    (Redis < 6, or plan's user may not run ACL LIST) a line says the user check
 *                    was skipped and why, then the requirepass check below
 *   requirepass      an unauthenticated PING on each server says whether it requires a password;
 *                    one requiring it and the other not is a WARN, and so are two different
 *                    passwords in the URLs of a pair that both use the default user
 *
 * Rehome's own user on the old server (the source URL's) is not an application's: it is left out.
 * Only reads; nothing is written.
 */
import net from 'node:net';
import { PING_REQUEST } from '../resp/request-framer.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { plural, type ServerConn } from './scan-both.js';

type Level = 'ok' | 'warn' | 'fail';
type Add = (check: 'users', level: Level, message: string, details?: string[]) => void;

/** A server's users and their rules (ACL LIST), or why they could not be read. */
type AclUsers = { users: Map<string, string[]> } | { skipped: string };

/**
 * Rule words that say nothing about what a user may do, or that one Redis version writes and
 * another leaves out (7.0 writes sanitize-payload, 6.2 does not).
 */
const NEUTRAL_RULES = new Set(['sanitize-payload', 'skip-sanitize-payload', 'resetchannels', 'resetkeys', 'reset']);

/** Runs the users check; see the file comment. Never throws for a server problem. */
export async function checkUsers(s: ServerConn, t: ServerConn, add: Add): Promise<void> {
  const [sAcl, tAcl] = await Promise.all([aclUsers(s), aclUsers(t)]);
  if ('users' in sAcl && 'users' in tAcl) {
    await compareUsers(s, sAcl.users, tAcl.users, add);
    return;
  }
  const why = [sAcl, tAcl]
    .map((a, i) => ('skipped' in a ? `${i === 0 ? 'old' : 'new'} server: ${a.skipped}` : null))
    .filter((x) => x !== null);
  add('users', 'warn', `users not compared (${why.join('; ')}): check by hand that every user the applications log in as exists on the new server; only the password requirement is checked`);
  await comparePasswords(s, t, add);
}

async function aclUsers(c: ServerConn): Promise<AclUsers> {
  let lines: unknown;
  try {
    lines = await c.redis.call('ACL', 'LIST');
  } catch (e) {
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0] ?? '';
    if (/unknown command/i.test(msg)) return { skipped: 'no ACL (Redis before 6)' };
    if (/^NOPERM/.test(msg)) return { skipped: `plan's user ${c.endpoint.username ?? 'default'} may not run ACL LIST (${msg})` };
    return { skipped: `ACL LIST failed: ${msg}` };
  }
  const users = new Map<string, string[]>();
  for (const line of Array.isArray(lines) ? lines : []) {
    const words = String(line).split(' ');
    if (words[0] !== 'user' || words[1] === undefined) continue;
    users.set(words[1], words.slice(2).filter((w) => !NEUTRAL_RULES.has(w)));
  }
  return { users };
}

async function compareUsers(s: ServerConn, old: Map<string, string[]>, neu: Map<string, string[]>, add: Add): Promise<void> {
  // Rehome's own login on the old server: it moves keys, applications do not use it.
  const own = s.endpoint.username !== undefined && s.endpoint.username !== 'default' ? s.endpoint.username : null;
  const appUsers = [...old.keys()].filter((u) => u !== own).sort();
  const missing = appUsers.filter((u) => !neu.has(u));
  if (missing.length > 0) {
    const live = await loggedIn(s);
    const active = live === null ? [] : missing.filter((u) => live.has(u));
    const hint = 'create them there (ACL SETUSER, or the same ACL file) before clients move: their AUTH would be refused (WRONGPASS)';
    if (active.length > 0) {
      add('users', 'fail', `${plural(missing.length, 'user')} of the old server ${missing.length === 1 ? 'is' : 'are'} missing on the new one: ${missing.join(', ')}; clients are logged in as ${active.join(', ')} right now; ${hint}`);
    } else {
      const note = live === null ? ' (CLIENT LIST refused: whether clients use them is unknown)' : '';
      add('users', 'warn', `${plural(missing.length, 'user')} of the old server ${missing.length === 1 ? 'is' : 'are'} missing on the new one: ${missing.join(', ')}${note}; ${hint}`);
    }
  }
  const differ: string[] = [];
  for (const u of appUsers) {
    const n = neu.get(u);
    if (n === undefined) continue;
    const d = ruleDifference(old.get(u)!, n);
    if (d !== null) differ.push(`${u}: ${d}`);
  }
  if (differ.length > 0) {
    add(
      'users',
      'warn',
      `${plural(differ.length, 'user')} ${differ.length === 1 ? 'has' : 'have'} other rules on the new server (a password or permission the applications rely on may be missing there); compare ACL LIST on both`,
      differ,
    );
  }
  if (missing.length === 0 && differ.length === 0) {
    const skipped = own !== null && !neu.has(own) ? `; rehome's own user ${own} is only on the old server, as it may be` : '';
    add('users', 'ok', `every user of the old server exists on the new one with the same rules (${appUsers.join(', ')})${skipped}`);
  }
}

/** Users with a client connection to the server now (CLIENT LIST); null when refused. */
async function loggedIn(s: ServerConn): Promise<Set<string> | null> {
  try {
    const text = String(await s.redis.call('CLIENT', 'LIST'));
    const users = new Set<string>();
    for (const m of text.matchAll(/ user=(\S+)/g)) users.add(m[1]!);
    return users;
  } catch {
    return null;
  }
}

/** What differs between two users' rules, passwords shown by their hash's first characters; null: the same. */
function ruleDifference(old: string[], neu: string[]): string | null {
  const onlyOld = old.filter((w) => !neu.includes(w));
  const onlyNew = neu.filter((w) => !old.includes(w));
  if (onlyOld.length === 0 && onlyNew.length === 0) return null;
  const show = (ws: string[]) => (ws.length === 0 ? '-' : ws.map((w) => (w.startsWith('#') ? `password ${w.slice(1, 9)}...` : w)).join(' '));
  return `old server only: ${show(onlyOld)}; new server only: ${show(onlyNew)}`;
}

/** The requirepass check, for servers whose users cannot be listed. */
async function comparePasswords(s: ServerConn, t: ServerConn, add: Add): Promise<void> {
  const [sLocked, tLocked] = await Promise.all([requiresPassword(s.endpoint), requiresPassword(t.endpoint)]);
  if (sLocked === null || tLocked === null) {
    add('users', 'warn', 'could not tell whether both servers require a password (an unauthenticated PING got no answer)');
    return;
  }
  if (sLocked && !tLocked) {
    add('users', 'warn', `the old server requires a password and the new one ${describeEndpoint(t.endpoint)} does not: set requirepass (or the users) on the new server, or it is open to anyone who reaches it`);
  } else if (!sLocked && tLocked) {
    add('users', 'warn', 'the new server requires a password and the old one does not: applications that never AUTH would be refused (NOAUTH) once their commands run on the new server');
  } else if (!sLocked) {
    add('users', 'ok', 'neither server requires a password');
  } else if (s.endpoint.username === undefined && t.endpoint.username === undefined && s.endpoint.password !== t.endpoint.password) {
    add('users', 'warn', "both servers require a password, but the URLs' passwords differ: applications logging in with the old server's password would be refused (WRONGPASS) by the new one");
  } else {
    add('users', 'ok', 'both servers require a password');
  }
}

/**
 * Whether a fresh, unauthenticated connection is refused commands (NOAUTH): a raw socket, since
 * a client library would log in first. null when the server gives no answer.
 */
function requiresPassword(ep: Endpoint, timeoutMs = 5_000): Promise<boolean | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: ep.host, port: ep.port });
    let buf = '';
    const done = (v: boolean | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('connect', () => sock.write(PING_REQUEST));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('-NOAUTH'));
    });
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
  });
}
