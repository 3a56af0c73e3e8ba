import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/** `COPY ... FROM STDIN` of these text-format lines on this connection; resolves to the rows copied. */
export async function copyLines(client: PoolClient, sql: string, lines: Iterable<string>): Promise<number> {
  const stream = client.query(copyFrom(sql));
  await pipeline(Readable.from(chunks(lines)), stream);
  return stream.rowCount;
}

/** Fewer, larger writes to the socket: lines joined a thousand at a time. */
function* chunks(lines: Iterable<string>, per = 1000): Generator<string> {
  let buf: string[] = [];
  for (const l of lines) {
    buf.push(l);
    if (buf.length >= per) {
      yield buf.join('');
      buf = [];
    }
  }
  if (buf.length) yield buf.join('');
}
