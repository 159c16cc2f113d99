/**
 * One read buffer for every plain TCP socket of the process (clients on the plain port, and the
 * connections rehome opens to servers), passed to Node as a socket's `onread`.
 *
 * Why: by default every read allocates a 64 KB buffer, shrinks it to what arrived, and pushes it
 * through the stream machinery, which schedules more work; at pipeline 1 that is once per request
 * of a few dozen bytes. With `onread`, Node reads into this buffer and calls back at once. Each
 * read is copied out and given to the socket's 'data' listeners, so the rest of rehome sees an
 * ordinary socket (pause, resume, end, close and back-pressure behave as usual), and the buffer
 * is free again before the next read of any socket lands in it (the event loop runs one callback
 * at a time).
 */
import type net from 'node:net';

const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** The `onread` option for a socket that `sock()` returns once it exists. */
export function reusedRead(sock: () => net.Socket): net.OnReadOpts {
  return {
    buffer: READ_BUFFER,
    callback: (n) => {
      const chunk = Buffer.allocUnsafe(n);
      READ_BUFFER.copy(chunk, 0, 0, n);
      sock().emit('data', chunk);
      return true; // pausing is the socket's pause(), as for any socket
    },
  };
}
