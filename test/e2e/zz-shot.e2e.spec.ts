import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { startTestApp } from '../support/app';
it('shot', async () => {
  const app = await startTestApp();
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1280,1600', '--virtual-time-budget=8000', '--enable-logging=stderr', '--v=0'];
  let out = '';
  try {
    out = execFileSync('chromium', [...args, '--screenshot=/tmp/docs.png', `${app.url}/docs`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) { out = String((e as any).stderr); }
  const dom = execFileSync('chromium', [...args, '--dump-dom', `${app.url}/docs#/users/UsersController_me`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  writeFileSync('/tmp/docs-dom.html', dom);
  writeFileSync('/tmp/docs-log.txt', out);
  await app.stop();
}, 120000);
