// Drives the web UIs in headless Chromium (Debian's package) through their main tasks, with
// screenshots. Run by edge-host/tests/web_ui.rs, which starts the cloud and passes:
// WATTLET_URL, RESEARCHER_TOKEN, ADMIN_TOKEN, ACTIVE_DEVICE (a device that reported its
// status, in a household with consent, and HEALTH_REPORTS health reports), SILENT_DEVICE (one
// registered long ago that never reported), DEVICE_LINK_ACTIVE (that household's device UI link,
// MEASUREMENTS of them uploaded), DEVICE_LINK_NEW (a household without consent), SCREENSHOTS
// (a directory), PLAYWRIGHT (playwright-core).
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT);
const url = process.env.WATTLET_URL;
const shots = process.env.SCREENSHOTS;

function check(condition, what) {
  if (!condition) throw new Error(`UI check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  // The test CA is not the browser's; the server is ours on loopback.
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  // Registration: a researcher registers a participant, then sees them with their consent.
  await page.goto(`${url}/ui/registration/`);
  await page.fill('#token', process.env.RESEARCHER_TOKEN);
  await page.click('#token-form button');
  await page.fill('input[name=name]', 'Ada Lovelace');
  await page.fill('input[name=email]', 'ada.ui@example.org');
  await page.fill('input[name=device]', 'pi-ui-1');
  await page.selectOption('select[name=meter_model]', 'EHZ');
  await page.fill('input[name=latitude]', '52.5163');
  await page.fill('input[name=longitude]', '13.3777');
  await page.fill('input[name=nuts3]', 'DE300');
  await page.fill('input[name=street]', 'Unter den Linden');
  await page.fill('input[name=house_number]', '1');
  await page.fill('input[name=postal_code]', '10117');
  await page.fill('input[name=city]', 'Berlin');
  await page.fill('input[name=country]', 'DE');
  await page.fill('input[name=kwp]', '7.4');
  await page.fill('input[name=azimuth]', '180');
  await page.fill('input[name=tilt]', '30');
  await page.fill('input[name=installed]', '2021-04-15');
  await page.click('#register button[type=submit]');
  const message = page.locator('#register-message');
  await message.waitFor({ state: 'visible' });
  const registered = await message.textContent();
  check(/Registered household [0-9a-f-]{36} with device pi-ui-1/.test(registered), `registered: ${registered}`);
  const row = page.locator('#households tr', { hasText: 'Ada Lovelace' });
  await row.waitFor();
  check((await row.textContent()).includes('not granted'), 'the new participant is listed, consent not granted');
  check(await page.inputValue('input[name=name]') === '', 'the form is cleared after registering');
  await page.screenshot({ path: `${shots}/registration.png`, fullPage: true });

  // The same email again: the API's reason is shown, nothing is registered twice.
  await page.fill('input[name=name]', 'Ada Again');
  await page.fill('input[name=email]', 'ADA.UI@example.org');
  await page.fill('input[name=device]', 'pi-ui-2');
  await page.fill('input[name=latitude]', '52.5');
  await page.fill('input[name=longitude]', '13.4');
  await page.click('#register button[type=submit]');
  await page.locator('#register-message.error').waitFor();
  const refused = await message.textContent();
  check(refused.includes('already registered'), `a taken email is refused: ${refused}`);
  check(await page.locator('#households tr', { hasText: 'Ada' }).count() === 1, 'listed once');
  await page.screenshot({ path: `${shots}/registration-refused.png`, fullPage: true });

  // Device status: an administrator sees versions, activity and consent of every device.
  const status = await context.newPage();
  status.on('pageerror', (e) => errors.push(e.message));
  await status.goto(`${url}/ui/status/`);
  await status.fill('#token', 'not-a-token');
  await status.click('#token-form button');
  await status.locator('#message.error').waitFor();
  check((await status.textContent('#message')).includes('invalid bearer token'), 'a wrong token is refused');
  await status.fill('#token', process.env.ADMIN_TOKEN);
  await status.click('#token-form button');
  const active = status.locator(`tr[data-device="${process.env.ACTIVE_DEVICE}"]`);
  await active.waitFor();
  const activeText = await active.textContent();
  check(activeText.includes('meter-parser 0.1.0'), `component versions shown: ${activeText}`);
  check(await active.locator('td.state-granted').count() === 1, 'consent granted shown');
  check(/\d+ s ago|\d+ min ago/.test(activeText), `recent activity shown: ${activeText}`);
  const fresh = await status.locator('tr[data-device="pi-ui-1"]').textContent();
  check(fresh.includes('Ada Lovelace') && fresh.includes('never'), `a new device has no activity yet: ${fresh}`);
  await status.screenshot({ path: `${shots}/status.png`, fullPage: true });

  // Fleet: the device's reported health, a silent device flagged, the device's history plotted.
  const fleet = await context.newPage();
  fleet.on('pageerror', (e) => errors.push(e.message));
  await fleet.goto(`${url}/ui/fleet/`);
  await fleet.fill('#token', process.env.ADMIN_TOKEN);
  await fleet.click('#token-form button');
  const healthy = fleet.locator(`tr[data-device="${process.env.ACTIVE_DEVICE}"]`);
  await healthy.waitFor();
  const healthText = await healthy.textContent();
  check(healthText.includes('2 unsent') && healthText.includes('2.5 GB'), `latest buffer and disk shown: ${healthText}`);
  check(healthText.includes('failed: upload 0.1.0 → 0.2.0'), `update state shown: ${healthText}`);
  check(await healthy.getAttribute('data-silent') === 'false', 'a reporting device is not silent');
  const quiet = fleet.locator(`tr[data-device="${process.env.SILENT_DEVICE}"]`);
  check(await quiet.getAttribute('data-silent') === 'true' && (await quiet.textContent()).includes('silent'),
    'a device that never reported since long ago is flagged silent');
  await healthy.locator('a.choose').click();
  await fleet.locator('#plot svg polyline').waitFor();
  const plotted = await fleet.getAttribute('#plot svg polyline', 'data-points');
  check(plotted === process.env.HEALTH_REPORTS, `the plot draws every health report: ${plotted}`);
  const marked = await fleet.locator('#plot svg circle.point').count();
  check(String(marked) === process.env.HEALTH_REPORTS, `each report is a point: ${marked}`);
  await fleet.selectOption('#quantity', 'uptime_h');
  await fleet.locator('#plot svg[aria-label="uptime in h"]').waitFor();
  check(true, 'the plotted quantity can be changed');
  await fleet.screenshot({ path: `${shots}/fleet.png`, fullPage: true });

  // The participant's device UI, opened from the device's link: a new household grants consent.
  const device = await context.newPage();
  device.on('pageerror', (e) => errors.push(e.message));
  await device.goto(`${url}${process.env.DEVICE_LINK_NEW}`);
  await device.locator('#consent-state').waitFor();
  check(!device.url().includes('token'), `the token leaves the address bar: ${device.url()}`);
  check(await device.textContent('#consent-state') === 'not granted', 'consent starts not granted');
  await device.click('#grant');
  await device.locator('#consent-state.state-granted').waitFor();
  check(!(await device.isVisible('#grant')), 'granted: no grant button any more');

  // The household with measurements, its link opened in the same tab: details, the chart, then
  // the final revocation.
  await device.goto(`${url}${process.env.DEVICE_LINK_ACTIVE}`);
  await device.locator('#details', { hasText: 'Grace Hopper' }).waitFor();
  await device.locator('#chart svg polyline').waitFor();
  const drawn = await device.getAttribute('#chart svg polyline', 'data-points');
  check(drawn === process.env.MEASUREMENTS, `the chart draws every measurement: ${drawn}`);
  const details = await device.textContent('#details');
  check(details.includes('Grace Hopper') && details.includes('Hauptstraße 5'), `details shown: ${details}`);
  // The rules on the household's data: the study's retention (not removable here), a pause the
  // participant adds and removes; the access log lists the reads and the changes.
  await device.locator('#rules tr[data-policy="retention"][data-principal="study"]').waitFor();
  check(await device.locator('#rules tr[data-principal="study"] button').count() === 0,
    "the study's rule has no remove button");
  await device.fill('#pause-from', '2026-11-23T16:00');
  await device.fill('#pause-to', '2026-11-23T17:00');
  await device.click('#pause-form button[type=submit]');
  const paused = device.locator('#rules tr[data-policy="pause-window"][data-principal="participant"]');
  await paused.waitFor();
  await device.locator('#access-log tr[data-operation="attach"]').waitFor();
  check(await device.locator('#access-log tr[data-operation="read"]').count() >= 1,
    'the access log shows the reads of this page');
  check((await device.textContent('#log-head')).startsWith('Head: '), 'the chain head is shown');
  await device.screenshot({ path: `${shots}/device-rules.png`, fullPage: true });
  await paused.locator('button[data-detach]').click();
  await device.locator('#access-log tr[data-operation="detach"]').waitFor();
  check(await paused.count() === 0, 'the pause is gone after removing it');
  // An export copy: kept from now on, downloaded as CSV (empty so far: its header line).
  await device.click('#keep-copy');
  await device.locator('#rules tr[data-policy="export-copy"][data-principal="participant"]').waitFor();
  check(await device.isHidden('#keep-copy'), 'one export copy: the keep button is gone');
  const [download] = await Promise.all([device.waitForEvent('download'), device.click('#download-copy')]);
  check(download.suggestedFilename() === 'wattlet-export-copy.csv', `the file's name: ${download.suggestedFilename()}`);
  const saved = fs.readFileSync(await download.path(), 'utf8');
  check(saved === 'uuid,meter,measured_at,obis,value\n', `the CSV: ${JSON.stringify(saved)}`);
  check(await device.isHidden('#message'), 'no error shown after the rule changes');
  const warning = await device.textContent('#revoke-warning');
  check(/final and cannot be undone/.test(warning), 'the revocation warning says it is final');
  check(await device.isDisabled('#revoke'), 'revoking needs the "final" box ticked first');
  check(await device.isHidden('#message'), 'no error shown');
  await device.screenshot({ path: `${shots}/device.png`, fullPage: true });
  await device.check('#understood');
  let asked = '';
  device.once('dialog', (dialog) => { asked = dialog.message(); dialog.accept(); });
  await device.click('#revoke');
  await device.locator('#consent-state.state-revoked').waitFor();
  check(asked.includes('cannot be undone'), `a last confirmation was asked: ${asked}`);
  await device.locator('#details', { hasText: 'deleted (anonymized)' }).waitFor();
  const after = await device.textContent('#details');
  check(!after.includes('Grace Hopper') && !after.includes('Hauptstraße') && after.includes('displaced by'),
    `anonymized at once: ${after}`);
  check(!(await device.isVisible('#revoke')) && !(await device.isVisible('#grant')), 'no consent buttons after revocation');
  await device.screenshot({ path: `${shots}/device-revoked.png`, fullPage: true });

  // Without the link there is no access.
  const stranger = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
  await stranger.goto(`${url}/ui/device/`);
  check((await stranger.textContent('#message')).includes("device's link"), 'no token: told to use the link');

  check(errors.length === 0, `no script errors (${errors.join('; ')})`);
} finally {
  await browser.close();
}
