// The participant's device UI: consent (grant; revoke, which is final), registration details,
// the rules attached to the household's data (add a pause, remove their own), the access log,
// and the household's own measurements as a chart. The token comes from the device's link
// (`#token=…`, from POST /api/household/token); it is moved to this tab's storage and removed
// from the address bar.
import { api, apiText, chart, el, show, token } from '/ui/api.js';
import { SURVEY_CODES } from '/ui/survey.js';

const message = document.getElementById('message');

// The chart shows the first of the survey's power codes (kW) the measurements carry, else the
// first energy code (kWh).
const POWER = SURVEY_CODES.filter((c) => c.quantity === 'power');
const ENERGY = SURVEY_CODES.find((c) => c.quantity === 'energy');

function takeTokenFromLink() {
  const match = /^#token=(wt1\.[A-Za-z0-9_.-]+)$/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem('wattlet-token', match[1]);
    history.replaceState(null, '', window.location.pathname);
  }
}

function row(label, value) {
  return el('tr', {}, el('th', {}, label), el('td', {}, value ?? '—'));
}

function renderDetails(household) {
  const { user, address, location, metadata } = household;
  const rows = [row('Household', household.household)];
  rows.push(row('Participant', user ? `${user.name} <${user.email}>` : 'deleted (anonymized)'));
  rows.push(row('Address', address
    ? `${address.street} ${address.house_number}, ${address.postal_code} ${address.city}, ${address.country}`
    : 'none'));
  if (location) {
    const moved = location.displacement ? ` (displaced by ${Math.round(location.displacement.distance_m)} m)` : '';
    rows.push(row('Location', `${location.latitude.toFixed(5)}, ${location.longitude.toFixed(5)}${moved}`));
  }
  if (metadata) {
    rows.push(row('People', `${metadata.adults} adults (${metadata.employed_adults} employed), ${metadata.children} children`));
    const has = ['ev_charger', 'heat_pump', 'home_battery'].filter((k) => metadata[k]).map((k) => k.replace('_', ' '));
    rows.push(row('Equipment', has.length ? has.join(', ') : 'none'));
  }
  document.getElementById('details').replaceChildren(...rows);
  document.getElementById('details-section').hidden = false;
}

function renderConsent(consent) {
  document.getElementById('consent-state').textContent = consent.state.replace('_', ' ');
  document.getElementById('consent-state').className = `state-${consent.state}`;
  const since = consent.state === 'revoked' ? consent.revoked_at : consent.granted_at;
  document.getElementById('consent-since').textContent = since ? `since ${new Date(since).toLocaleString()}` : '';
  document.getElementById('grant-box').hidden = consent.state !== 'not_granted';
  document.getElementById('revoke-box').hidden = consent.state !== 'granted';
  document.getElementById('consent-section').hidden = false;
}

// The shipped policies in words; anything else is shown by its name.
const RULE_NAMES = {
  'researchers-aggregate': 'Researchers see aggregates only',
  'pause-window': 'Pause',
  retention: 'Retention',
  'k-anonymity': 'k-anonymity',
  'export-copy': 'Export copy',
};

function settings(attachment) {
  const p = attachment.parameters || {};
  switch (attachment.policy) {
    case 'researchers-aggregate': return `steps of ${p.step_minutes} minutes`;
    case 'retention': return `${p.months} months`;
    case 'k-anonymity': return `at least ${p.k} households in the region`;
    case 'export-copy': return p.registers ? `registers ${p.registers.join(', ')}` : 'every register';
    case 'pause-window':
      return (p.ranges || []).map((r) => `${new Date(r.from).toLocaleString()} – ${new Date(r.to).toLocaleString()}`).join('; ');
    default: return JSON.stringify(p);
  }
}

function renderRules(listing) {
  const rows = listing.attachments.map((a) => {
    const own = a.principal === 'participant';
    const remove = own
      ? el('button', { type: 'button', class: 'danger', 'data-detach': String(a.id) }, 'Remove')
      : el('span', { class: 'muted' }, 'the study’s');
    return el('tr', { 'data-attachment': String(a.id), 'data-policy': a.policy, 'data-principal': a.principal },
      el('td', {}, RULE_NAMES[a.policy] || a.policy),
      el('td', {}, own ? 'you' : 'the study'),
      el('td', {}, settings(a)),
      el('td', {}, remove));
  });
  const copying = listing.attachments.some((a) => a.policy === 'export-copy');
  document.getElementById('keep-copy').hidden = copying;
  document.getElementById('download-copy').hidden = !copying;
  const rules = document.getElementById('rules');
  rules.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: '4' }, 'No rules: what the survey’s roles allow.'))]));
  document.getElementById('rules-section').hidden = false;
}

function renderLog(log) {
  const newest = log.entries.slice(-20).reverse();
  const rows = newest.map(({ seq, entry }) => el('tr', { 'data-seq': String(seq), 'data-operation': entry.operation },
    el('td', {}, new Date(entry.at).toLocaleString()),
    el('td', {}, entry.role ? `${entry.role} (${entry.actor})` : entry.actor),
    el('td', {}, `${entry.operation} ${entry.object}${entry.purpose ? `, for ${entry.purpose}` : ''}`),
    el('td', {}, entry.decision || ''),
    el('td', {}, entry.served ?? entry.deleted ?? '')));
  document.getElementById('access-log').replaceChildren(...rows);
  document.getElementById('log-head').textContent = log.head ? `Head: ${log.head}` : 'No entry yet.';
  document.getElementById('log-section').hidden = false;
}

async function loadRulesAndLog() {
  renderRules(await api('GET', '/api/household/policies'));
  // The log is read from its start, a page at a time; the newest entries are shown.
  let log = await api('GET', '/api/household/access_log?limit=1000');
  let entries = log.entries;
  while (log.entries.length === 1000) {
    log = await api('GET', `/api/household/access_log?limit=1000&after=${entries[entries.length - 1].seq}`);
    entries = entries.concat(log.entries);
  }
  renderLog({ ...log, entries });
}

async function changeRules(method, path, body) {
  try {
    await api(method, path, body);
  } catch (error) {
    show(message, 'error', `Rule not changed: ${error.message}`);
  }
  await loadRulesAndLog();
}

// The whole export copy, a page at a time, saved as one CSV file.
async function downloadCopy() {
  let csv = '';
  let query = 'limit=10000';
  for (;;) {
    const page = await apiText(`/api/household/export_copy?${query}`);
    // Every page starts with the header line; the file has it once.
    csv += csv ? page.text.slice(page.text.indexOf('\n') + 1) : page.text;
    if (!page.next) break;
    query = page.next;
  }
  const href = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
  const link = el('a', { href, download: 'wattlet-export-copy.csv' });
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(href);
}

// Each load counts up; an older load that finishes late (another link was opened meanwhile)
// draws nothing.
let generation = 0;

async function renderMeasurements(meter, mine = generation) {
  const { measurements } = await api('GET', `/api/household/meter/${meter}/measurement?limit=10000`);
  if (mine !== generation) return;
  const box = document.getElementById('chart');
  const caption = document.getElementById('chart-caption');
  const value = (m, code) => {
    for (const entry of m.data) if (code in entry) return entry[code];
    return undefined;
  };
  const shown = POWER.find((c) => measurements.some((m) => value(m, c.hex) !== undefined)) || ENERGY;
  const { hex: code, label, unit } = shown;
  const points = measurements
    .map((m) => ({ t: Date.parse(m.measured_at), v: value(m, code) }))
    .filter((p) => typeof p.v === 'number');
  if (points.length === 0) {
    caption.textContent = 'No measurements yet.';
    box.replaceChildren();
    return;
  }
  caption.textContent = `${label} (${unit}), ${points.length} measurements`;
  box.replaceChildren(chart(points, label, unit));
}

async function load() {
  const mine = ++generation;
  message.hidden = true;
  try {
    const household = await api('GET', '/api/household');
    if (mine !== generation) return;
    renderConsent(household.consent);
    renderDetails(household);
    await loadRulesAndLog();
    if (mine !== generation) return;
    const { meters } = await api('GET', '/api/household/meter');
    if (mine !== generation) return;
    const select = document.getElementById('meter');
    select.replaceChildren(...meters.map((m) => el('option', { value: m.uuid }, `${m.model} ${m.type.toLowerCase()}`)));
    document.getElementById('chart-section').hidden = meters.length === 0;
    if (meters.length) await renderMeasurements(select.value, mine);
  } catch (error) {
    if (mine !== generation) return;
    // The link's token lasts 12 h: an expired, revoked or altered one needs a new link, not a
    // retry.
    const stale = error.code === 'invalid_token' || error.code === 'token_revoked';
    const hint = stale ? " Open a new link from your measurement device." : '';
    show(message, 'error', `Cannot load your household: ${error.message}.${hint}`);
  }
}

// Refusals that mean the consent shown is out of date (changed elsewhere, e.g. by the device).
const CONSENT_CODES = ['consent_already_granted', 'consent_not_granted', 'consent_revoked'];

async function changeConsent(method) {
  try {
    renderConsent(await api(method, '/api/household/consent'));
    await load();
  } catch (error) {
    if (CONSENT_CODES.includes(error.code)) await load();
    show(message, 'error', `Consent not changed: ${error.message}`);
  }
}

takeTokenFromLink();
// Another device link opened in this tab: the same page, a new token.
window.addEventListener('hashchange', () => {
  takeTokenFromLink();
  load();
});
document.getElementById('grant').addEventListener('click', () => changeConsent('POST'));
document.getElementById('understood').addEventListener('change', (event) => {
  document.getElementById('revoke').disabled = !event.target.checked;
});
document.getElementById('revoke').addEventListener('click', () => {
  if (window.confirm('Revoke consent for good? This cannot be undone.')) changeConsent('DELETE');
});
document.getElementById('meter').addEventListener('change', (event) => renderMeasurements(event.target.value));
document.getElementById('pause-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const from = new Date(document.getElementById('pause-from').value);
  const to = new Date(document.getElementById('pause-to').value);
  if (!(from < to)) {
    show(message, 'error', 'A pause ends after it starts.');
    return;
  }
  message.hidden = true;
  changeRules('POST', '/api/household/policies', {
    policy: 'pause-window',
    parameters: { ranges: [{ from: from.toISOString(), to: to.toISOString() }] },
  });
});
document.getElementById('keep-copy').addEventListener('click', () => {
  changeRules('POST', '/api/household/policies', { policy: 'export-copy', parameters: {} });
});
document.getElementById('download-copy').addEventListener('click', async () => {
  try {
    await downloadCopy();
  } catch (error) {
    show(message, 'error', `No download: ${error.message}`);
  }
  await loadRulesAndLog();
});
document.getElementById('rules').addEventListener('click', (event) => {
  const id = event.target.getAttribute('data-detach');
  if (id) changeRules('DELETE', `/api/household/policies/${id}`);
});
if (token()) {
  load();
} else {
  show(message, 'error', "Open this page with your measurement device's link: it carries your access.");
}
