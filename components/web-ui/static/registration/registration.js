// Researchers: register a participant (POST /api/management/household) and list every
// household with its consent (GET /api/management/household).
import { api, bindToken, el, explain, show } from '/ui/api.js';

const form = document.getElementById('register');
const message = document.getElementById('register-message');
const rows = document.getElementById('households');
const listMessage = document.getElementById('list-message');

function value(name) {
  return form.elements[name].value.trim();
}

// The registration body from the form; optional groups only when their first field is filled.
function registration() {
  const body = {
    name: value('name'),
    email: value('email'),
    device: value('device'),
    meters: [{ type: value('meter_type'), model: value('meter_model') }],
    location: { latitude: Number(value('latitude')), longitude: Number(value('longitude')) },
  };
  if (value('nuts3')) body.location.nuts3 = value('nuts3');
  if (value('street')) {
    body.address = {
      street: value('street'),
      house_number: value('house_number'),
      postal_code: value('postal_code'),
      city: value('city'),
      country: value('country'),
    };
  }
  if (value('kwp')) {
    body.pv_systems = [{
      nominal_power_kwp: Number(value('kwp')),
      azimuth: Number(value('azimuth') || 180),
      tilt: Number(value('tilt') || 30),
      installation_date: value('installed'),
    }];
  }
  return body;
}

async function refresh() {
  listMessage.hidden = true;
  try {
    const { households } = await api('GET', '/api/management/household');
    rows.replaceChildren(
      ...households.map((h) =>
        el('tr', { 'data-household': h.household },
          el('td', {}, h.user ? `${h.user.name} <${h.user.email}>` : el('span', { class: 'muted' }, 'anonymized')),
          el('td', {}, el('code', {}, h.household)),
          el('td', { class: `state-${h.consent.state}` }, h.consent.state.replace('_', ' ')),
          el('td', {}, h.devices.map((d) => d.id).join(', ')),
          el('td', {}, new Date(h.created_at).toLocaleString()),
        ),
      ),
    );
    if (households.length === 0) {
      rows.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No participants yet.')));
    }
  } catch (error) {
    show(listMessage, 'error', `Cannot list the participants: ${explain(error)}`);
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const created = await api('POST', '/api/management/household', registration());
    show(message, 'ok', `Registered household ${created.household} with device ${created.device}; consent: not granted.`);
    form.reset();
    await refresh();
  } catch (error) {
    show(message, 'error', `Not registered: ${explain(error)}`);
  }
});

document.getElementById('refresh').addEventListener('click', refresh);
bindToken(document.getElementById('token-form'), refresh);
