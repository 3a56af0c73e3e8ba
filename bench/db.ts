import { Client } from 'pg';
import { withDatabase } from './support';

/**
 * Used by bench/run.sh:
 *   node dist/bench/db.js create <server-url> <name>   creates database <name>, prints its URL
 *   node dist/bench/db.js drop <server-url> <name>     drops it
 */

async function main([command, url, name]: string[]): Promise<void> {
  if (!url || !name || !/^[a-z_][a-z0-9_]{0,62}$/.test(name) || (command !== 'create' && command !== 'drop')) {
    throw new Error('usage: node dist/bench/db.js <create|drop> <server-url> <database-name>');
  }
  const admin = new Client({ connectionString: withDatabase(url, 'postgres') });
  await admin.connect();
  try {
    if (command === 'create') {
      await admin.query(`CREATE DATABASE ${name}`);
      console.log(withDatabase(url, name));
    } else {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
