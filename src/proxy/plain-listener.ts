/**
 * The plain port for clients (--listen): a net.Server whose sockets read into one buffer that
 * the process reuses, instead of a new buffer and a trip through the stream machinery per read.
 *
 * Why: at pipeline 1 every request is one read, and Node's default read path costs a 64 KB
 * allocation shrunk to size, a Buffer object for the collector, and a stream push that schedules
 * more work, for a request of a few dozen bytes. Node offers a reused buffer (`onread`) only to
 * sockets it creates itself, so an accepted connection's handle is moved, before anything was
 * read from it, to such a socket. The session sees an ordinary net.Socket: its bytes come as
 * 'data' events (a copy of what was read, the shared buffer being reused at the next read), and
 * pause, resume, end, close and back-pressure behave as on any socket.
 *
 * When the handle cannot be moved (a Node.js without it), the accepted socket is used as is.
 */
import net from 'node:net';

/** Reads of every client land here; each one is copied out before the next can happen. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

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

function withReusedBuffer(accepted: net.Socket): net.Socket {
  const shell = accepted as unknown as WithHandle;
  const handle = shell._handle;
  if (handle === null || typeof handle !== 'object') return resumed(accepted);
  let sock: net.Socket;
  try {
    sock = new net.Socket({
      handle,
      allowHalfOpen: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          sock.emit('data', Buffer.from(buf.subarray(0, n)));
        },
      },
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
