/**
 * The plain port for clients (--listen): a net.Server whose sockets read into the process's one
 * reused read buffer (src/util/reused-read.ts says why). Node offers that (`onread`) only to
 * sockets it creates itself, so an accepted connection's handle is moved, before anything was
 * read from it, to such a socket. The session sees an ordinary net.Socket.
 *
 * When the handle cannot be moved (a Node.js without it), the accepted socket is used as is.
 */
import net from 'node:net';
import { reusedRead } from '../util/reused-read.js';

/** The handle of an accepted socket, which Node keeps on an undocumented field. */
interface WithHandle {
  _handle: unknown;
}

/**
 * A server for the plain port: `accept` gets each client's socket. Half-open, as the TLS port: a
 * client that shuts down its sending side still gets every reply.
 */
export function createPlainServer(accept: (sock: net.Socket) => void): net.Server {
  // Paused: nothing is read before the handle moves to its new socket.
  return net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => accept(withReusedBuffer(sock)));
}

/** The accepted socket, moved to one that reads into the reused buffer (exported for its test). */
export function withReusedBuffer(accepted: net.Socket): net.Socket {
  const shell = accepted as unknown as WithHandle;
  const handle = shell._handle;
  if (handle === null || typeof handle !== 'object') return resumed(accepted);
  let sock: net.Socket;
  try {
    sock = new net.Socket({
      handle,
      allowHalfOpen: true,
      onread: reusedRead(() => sock),
    } as net.SocketConstructorOpts);
  } catch {
    return resumed(accepted);
  }
  // The accepted socket gives up the handle and is dropped (the server stops counting it).
  shell._handle = null;
  accepted.destroy();
  return sock;
}

function resumed(sock: net.Socket): net.Socket {
  sock.resume();
  return sock;
}
