// Administrators: every device's latest health (GET /api/management/devices), silent devices
// flagged, and one device's history as a plot (GET /api/management/device/:id/health).
import { ago, api, bindToken, chart, el, explain, show, token } from '/ui/api.js';

const rows = document.getElementById('devices');
const message = document.getElementById('message');
const updated = document.getElementById('updated');
const plot = document.getElementById('plot');
const quantity = document.getElementById('quantity');
const historyDevice = document.getElementById('history-device');
let chosen = null;

const QUANTITIES = {
  unsent: { label: 'rows not yet sent', unit: 'rows', of: (r) => r.buffer && r.buffer.unsent },
  free_disk_mb: { label: 'free disk', unit: 'MB', of: (r) => r.free_disk_bytes == null ? null : r.free_disk_bytes / 1e6 },
  skew_s: { label: 'clock skew', unit: 's', of: (r) => r.clock && r.clock.skew_s },
  uptime_h: { label: 'uptime', unit: 'h', of: (r) => r.uptime_s == null ? null : r.uptime_s / 3600 },
};

function versions(components) {
  const entries = Object.entries(components || {});
  return entries.length ? entries.map(([name, version]) => `${name} ${version}`).join(', ') : '—';
}

function bytes(n) {
  if (n == null) return '—';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  return `${Math.round(n / 1e6)} MB`;
}

function clock(health, device) {
  const plausible = health ? health.clock.plausible : device.clock_plausible;
  if (plausible == null) return '—';
  const skew = health && health.clock.skew_s != null ? ` (${health.clock.skew_s} s)` : '';
  return `${plausible ? 'set' : 'not set'}${skew}`;
}

function update(health) {
  const u = health && health.update;
  if (!u) return '—';
  const what = [u.component, u.from && u.to ? `${u.from} → ${u.to}` : u.to].filter(Boolean).join(' ');
  return el('span', { class: `update-${u.state}`, title: u.reason || '' }, what ? `${u.state}: ${what}` : u.state);
}

async function refresh() {
  message.hidden = true;
  try {
    const { devices } = await api('GET', '/api/management/devices');
    rows.replaceChildren(...devices.map((d) => {
      const h = d.health;
      const row = el('tr', { 'data-device': d.device, 'data-silent': d.silent, class: d.silent ? 'silent' : '' },
        el('td', {}, el('a', { href: '#', class: 'choose' }, d.device),
          d.revoked_at ? el('div', { class: 'state-revoked' }, 'revoked') : ''),
        el('td', { class: 'muted' }, d.household),
        el('td', {}, versions(d.component_versions)),
        el('td', { title: d.reported_at || '' }, ago(d.reported_at)),
        el('td', { class: 'silent-flag' }, d.silent ? el('span', { class: 'state-revoked' }, 'silent') : 'no'),
        el('td', {}, h && h.buffer ? `${h.buffer.unsent} unsent, ${h.buffer.set_aside} set aside` : '—'),
        el('td', {}, bytes(h && h.free_disk_bytes)),
        el('td', {}, clock(h, d)),
        el('td', {}, update(h)),
      );
      row.querySelector('a.choose').addEventListener('click', (event) => {
        event.preventDefault();
        chosen = d.device;
        history();
      });
      return row;
    }));
    if (devices.length === 0) {
      rows.replaceChildren(el('tr', {}, el('td', { colspan: 9, class: 'muted' }, 'No devices yet.')));
    }
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    show(message, 'error', `Cannot load the fleet: ${explain(error)}`);
  }
}

async function history() {
  if (!chosen) return;
  historyDevice.textContent = chosen;
  try {
    const { reports } = await api('GET', `/api/management/device/${encodeURIComponent(chosen)}/health`);
    const q = QUANTITIES[quantity.value];
    const points = reports
      .map((r) => ({ t: Date.parse(r.reported_at), v: q.of(r) }))
      .filter((p) => typeof p.v === 'number' && Number.isFinite(p.v));
    if (points.length === 0) {
      plot.replaceChildren(el('span', { class: 'muted' }, 'No health reports from this device.'));
      return;
    }
    plot.replaceChildren(chart(points, q.label, q.unit));
  } catch (error) {
    plot.replaceChildren(el('span', { class: 'message error' }, `Cannot load the history: ${explain(error)}`));
  }
}

quantity.addEventListener('change', history);
document.getElementById('refresh').addEventListener('click', refresh);
bindToken(document.getElementById('token-form'), refresh);
setInterval(() => {
  if (token()) refresh();
}, 30000);
