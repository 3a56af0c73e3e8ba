import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pickPort } from '../../src/platform/local/processes';
import { projectRoot } from '../../src/platform/paths';
import { eventually } from './events';

/**
 * A real mosquitto process (the Debian package) for a test: the shipped
 * docker/mosquitto.conf with its limits and persistence, on a random local
 * port with a temp data dir, anonymous (the app's device auth is not what
 * such a test is about). Kill it with stop().
 */
export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  /** The mosquitto process's id (benchmarks read its CPU time from /proc). */
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startMosquitto(): Promise<Mosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'mosquitto-'));
  const port = await pickPort(); // below the ephemeral range: no outgoing connection holds it
  const shipped = readFileSync(join(projectRoot(), 'docker/mosquitto.conf'), 'utf8');
  const conf = shipped
    .replace(/^listener .*$/m, `listener ${port} 127.0.0.1`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`)
    .replace(/^allow_anonymous .*$/m, 'allow_anonymous true')
    .replace(/^(password_file|acl_file) .*$/gm, '')
    .replace(/^log_dest .*$/m, 'log_dest stderr');
  writeFileSync(join(dir, 'mosquitto.conf'), conf);
  const proc: ChildProcess = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise((res) => proc.once('exit', res));
  await eventually(
    () => {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${err}`);
      return new Promise<boolean>((res) => {
        const s = createConnection(port, '127.0.0.1', () => {
          s.end();
          res(true);
        });
        s.on('error', () => res(false));
      });
    },
    'mosquitto to listen',
    10_000,
  );
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    pid: proc.pid!,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
