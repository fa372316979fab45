// Administrators: every device with its versions, last measurement and activity, household and
// consent (GET /api/management/household), refreshed every 30 s.
import { ago, api, bindToken, el, explain, show, token } from '/ui/api.js';

const rows = document.getElementById('devices');
const message = document.getElementById('message');
const updated = document.getElementById('updated');

function versions(components) {
  const entries = Object.entries(components || {});
  return entries.length ? entries.map(([name, version]) => `${name} ${version}`).join(', ') : '—';
}

function meters(list) {
  return list.map((m) => {
    const locked = m.status && m.status.locked ? ' (locked: needs its PIN)' : '';
    return `${m.model} ${m.type.toLowerCase()}${locked}`;
  }).join(', ');
}

async function refresh() {
  message.hidden = true;
  try {
    const { households } = await api('GET', '/api/management/household');
    const devices = households.flatMap((h) => h.devices.map((d) => ({ device: d, household: h })));
    rows.replaceChildren(
      ...devices.map(({ device, household }) =>
        el('tr', { 'data-device': device.id },
          el('td', {}, device.id, device.revoked_at ? el('div', { class: 'state-revoked' }, 'revoked') : ''),
          el('td', {}, household.user ? household.user.name : el('span', { class: 'muted' }, 'anonymized'),
            el('div', { class: 'muted' }, household.household)),
          el('td', { class: `state-${household.consent.state}` }, household.consent.state.replace('_', ' ')),
          el('td', {}, versions(device.component_versions)),
          el('td', { title: device.last_measurement || '' }, ago(device.last_measurement)),
          el('td', { title: device.last_activity || '' }, ago(device.last_activity)),
          el('td', {}, meters(household.meters.filter((m) => m.device === device.id))),
        ),
      ),
    );
    if (devices.length === 0) {
      rows.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No devices yet.')));
    }
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    show(message, 'error', `Cannot load the devices: ${explain(error)}`);
  }
}

document.getElementById('refresh').addEventListener('click', refresh);
bindToken(document.getElementById('token-form'), refresh);
setInterval(() => {
  if (token()) refresh();
}, 30000);
