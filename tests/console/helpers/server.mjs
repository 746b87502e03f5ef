// A real `lastmile serve` for the browser tests: a config in a temporary
// folder (the repository's config/lastmile.toml and its dataset, edited),
// the server on free ports, its output kept for failure messages, and a
// simulated responder terminal (`lastmile terminal`).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const lastmileBin = process.env.LASTMILE_BIN
  ? resolve(process.env.LASTMILE_BIN)
  : join(repoRoot, 'target', 'debug', 'lastmile');

/** The demo fleet (config/luqiao/units.json). */
export function demoUnits() {
  return JSON.parse(readFileSync(join(repoRoot, 'config', 'luqiao', 'units.json'), 'utf8')).units;
}

/** Sets `key = value` inside `[section]` of a TOML text (the key must be there). */
export function setTomlKey(text, section, key, value) {
  const lines = text.split('\n');
  let inSection = false;
  for (let i = 0; i < lines.length; i++) {
    const header = lines[i].match(/^\s*\[([^\]]+)\]\s*(#.*)?$/);
    if (header) {
      inSection = header[1].trim() === section;
      continue;
    }
    if (inSection && new RegExp(`^\\s*${key}\\s*=`).test(lines[i])) {
      const comment = lines[i].match(/\s#.*$/);
      lines[i] = `${key} = ${value}${comment ? ` ${comment[0].trim()}` : ''}`;
      return lines.join('\n');
    }
  }
  throw new Error(`config/lastmile.toml has no key ${key} in [${section}] (has the config changed?)`);
}

function newToken() {
  return randomBytes(32).toString('hex');
}

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Writes a config to a fresh temporary folder.
 * - `edits`: [[section, key, value], ...] applied to config/lastmile.toml
 *   (values as TOML text: `20`, `"x"`).
 * - `auth`: when true, an [auth] section with a dispatcher token, an
 *   integration token, and a terminal token for each of `terminalUnits`.
 * Returns { dir, configPath, tokens: { dispatcher, integration, terminal: Map } }.
 */
export function writeConfig({ edits = [], auth = false, terminalUnits = [], dispatcherRate = 1000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'lastmile-console-'));
  cpSync(join(repoRoot, 'config', 'luqiao'), join(dir, 'luqiao'), { recursive: true });
  let text = readFileSync(join(repoRoot, 'config', 'lastmile.toml'), 'utf8');
  for (const [section, key, value] of edits) text = setTomlKey(text, section, key, value);
  const tokens = { dispatcher: null, integration: null, terminal: new Map() };
  if (auth) {
    tokens.dispatcher = newToken();
    tokens.integration = newToken();
    const parts = [
      '',
      '[auth]',
      'enabled = true',
      'default_rate_per_s = 50.0',
      'default_burst = 100',
      '',
      '[[auth.tokens]]',
      'name = "console-test-dispatcher"',
      'role = "dispatcher"',
      `token_sha256 = "${sha256(tokens.dispatcher)}"`,
      `rate_per_s = ${dispatcherRate.toFixed(1)}`,
      `burst = ${dispatcherRate}`,
      '',
      '[[auth.tokens]]',
      'name = "console-test-integration"',
      'role = "integration"',
      `token_sha256 = "${sha256(tokens.integration)}"`,
    ];
    for (const unit of terminalUnits) {
      const token = newToken();
      tokens.terminal.set(unit, token);
      parts.push(
        '',
        '[[auth.tokens]]',
        `name = "terminal-${unit}"`,
        'role = "terminal"',
        `unit_id = "${unit}"`,
        `token_sha256 = "${sha256(token)}"`,
      );
    }
    text += `${parts.join('\n')}\n`;
  }
  const configPath = join(dir, 'lastmile.toml');
  writeFileSync(configPath, text);
  return { dir, configPath, tokens };
}

/** A free TCP port on 127.0.0.1 (for a server restarted on the same address). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

/** Keeps a child's output (the last `max` lines of each stream) for messages. */
function keepOutput(child, label) {
  const out = { stdout: [], stderr: [] };
  for (const name of ['stdout', 'stderr']) {
    let partial = '';
    child[name].setEncoding('utf8');
    child[name].on('data', (chunk) => {
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const line of lines) {
        out[name].push(line);
        if (out[name].length > 400) out[name].shift();
        if (process.env.LASTMILE_TEST_VERBOSE) process.stderr.write(`[${label} ${name}] ${line}\n`);
      }
    });
  }
  out.tail = (n = 40) =>
    [...out.stdout.slice(-n).map((l) => `  out| ${l}`), ...out.stderr.slice(-n).map((l) => `  err| ${l}`)].join('\n');
  return out;
}

function waitForExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolveExit) => {
    const timer = setTimeout(() => resolveExit(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolveExit(true);
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child, graceMs = 8000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (!(await waitForExit(child, graceMs))) {
    child.kill('SIGKILL');
    await waitForExit(child, 3000);
  }
}

/**
 * Starts `lastmile serve` and waits (bounded) for its two address lines.
 * Options: configPath, inMemory (default true), dataDir, listen, httpListen, env.
 * Returns { grpcAddr, httpAddr, baseUrl, child, output, stop() }.
 */
export async function startServer({
  configPath,
  inMemory = true,
  dataDir,
  listen = '127.0.0.1:0',
  httpListen = '127.0.0.1:0',
  env = {},
  startTimeoutMs = 30000,
} = {}) {
  const args = ['serve', '--listen', listen, '--http-listen', httpListen];
  if (configPath) args.push('--config', configPath);
  if (dataDir) args.push('--data-dir', dataDir);
  else if (inMemory) args.push('--in-memory');
  const child = spawn(lastmileBin, args, {
    cwd: configPath ? dirname(configPath) : repoRoot,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = keepOutput(child, 'lastmile');
  const describe = () => `${lastmileBin} ${args.join(' ')}\n${output.tail()}`;
  const addrs = await new Promise((resolveAddrs, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`lastmile serve printed no addresses within ${startTimeoutMs} ms:\n${describe()}`)),
      startTimeoutMs,
    );
    const found = {};
    const check = () => {
      for (const line of output.stdout) {
        const g = line.match(/^lastmile listening on (\S+)/);
        const h = line.match(/^lastmile http listening on (\S+)/);
        if (g) found.grpc = g[1];
        if (h) found.http = h[1];
      }
      if (found.grpc && found.http) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolveAddrs(found);
      }
    };
    const onData = () => setImmediate(check);
    child.stdout.on('data', onData);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${lastmileBin}: ${e.message} (build it: cargo build -p lastmile)`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      setImmediate(() => reject(new Error(`lastmile serve exited (${code ?? signal}) before listening:\n${describe()}`)));
    });
  });
  const strip = (a) => a.replace(/^[a-z]+:\/\//, '');
  const httpAddr = strip(addrs.http);
  const server = {
    grpcAddr: strip(addrs.grpc),
    httpAddr,
    baseUrl: `http://${httpAddr}`,
    child,
    output,
    describe,
    stop: () => stopChild(child),
  };
  return server;
}

/**
 * `lastmile terminal` for one unit. Returns { child, output, stop() }.
 */
export function startTerminal({ grpcAddr, unit, token, extraArgs = [] }) {
  const args = ['terminal', '--addr', `http://${grpcAddr}`, '--unit', unit, ...extraArgs];
  const env = { ...process.env };
  if (token) env.LASTMILE_TOKEN = token;
  else delete env.LASTMILE_TOKEN;
  const child = spawn(lastmileBin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = keepOutput(child, `terminal ${unit}`);
  return { child, output, stop: () => stopChild(child, 3000), describe: () => `lastmile ${args.join(' ')}\n${output.tail()}` };
}

/** A small JSON client of the gateway (Authorization: Bearer when a token is given). */
export function apiClient(baseUrl, token) {
  async function call(method, path, body) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, json, text };
  }
  async function ok(method, path, body) {
    const r = await call(method, path, body);
    if (r.status < 200 || r.status > 299) {
      throw new Error(`${method} ${path} answered ${r.status}: ${r.text.slice(0, 500)}`);
    }
    return r.json;
  }
  return {
    call,
    get: (path) => ok('GET', path),
    post: (path, body = {}) => ok('POST', path, body),
  };
}

export function removeDir(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}
