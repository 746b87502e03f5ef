// A TCP relay in front of the HTTP listener, so that a test can drop the
// browser's connections (its live feed included) while the server runs on,
// and refuse new ones for a while.

import { connect, createServer } from 'node:net';

export async function startRelay(targetAddr) {
  const [host, port] = [targetAddr.slice(0, targetAddr.lastIndexOf(':')), Number(targetAddr.slice(targetAddr.lastIndexOf(':') + 1))];
  const sockets = new Set();
  let blocked = false;
  const server = createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = connect(port, host);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = `127.0.0.1:${server.address().port}`;
  return {
    addr,
    baseUrl: `http://${addr}`,
    /** Ends every open connection; with `block`, refuses new ones until unblock(). */
    drop({ block = false } = {}) {
      blocked = block;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    unblock() {
      blocked = false;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
