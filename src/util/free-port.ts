import net from 'node:net';

/**
 * A free TCP port on 127.0.0.1, for throwaway servers (demo, import, tests, benches). Another
 * process could take it between the close and its use: callers that start a server on it retry.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
