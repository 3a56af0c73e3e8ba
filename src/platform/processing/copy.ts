import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/** Lines sent per chunk of a COPY: fewer, larger writes to the socket. */
const LINES_PER_CHUNK = 2000;

/** `COPY ... FROM STDIN` of these text-format lines on this connection; resolves to the rows copied. */
export async function copyLines(client: PoolClient, sql: string, lines: readonly string[]): Promise<number> {
  const stream = client.query(copyFrom(sql));
  await pipeline(Readable.from(chunks(lines)), stream);
  return stream.rowCount;
}

function* chunks(lines: readonly string[]): Generator<string> {
  for (let i = 0; i < lines.length; i += LINES_PER_CHUNK) yield lines.slice(i, i + LINES_PER_CHUNK).join('');
}
