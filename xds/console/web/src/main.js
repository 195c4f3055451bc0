// The skiff console: draws the snapshots the controller streams
// (xds/console's Snapshot) as a graph of sites and links, a table of
// services, and a list of recent events. It only reads.
import cytoscape from 'cytoscape';

const MAX_ROWS = 200; // rows drawn at once; the filter finds the rest

const state = { snapshot: null, live: false, selected: null, layoutKey: '' };
window.skiffConsole = state; // for tests and the curious: the last snapshot and the graph

const cy = cytoscape({
  container: document.getElementById('graph'),
  style: [
    { selector: 'node', style: { label: 'data(label)', 'background-color': '#1e88e5', color: '#1d2433', 'text-valign': 'bottom', 'text-margin-y': 6, 'font-size': 13 } },
    { selector: 'node[self = 1]', style: { 'border-width': 4, 'border-color': '#12324a', 'font-weight': 'bold' } },
    { selector: 'node[reachable = 0]', style: { 'background-color': '#9e9e9e', color: '#757575' } },
    { selector: 'node.serving', style: { 'background-color': '#43a047' } },
    { selector: 'edge', style: { label: 'data(label)', width: 3, 'line-color': '#2e7d32', 'font-size': 11, 'text-wrap': 'wrap', 'text-background-color': '#fff', 'text-background-opacity': 0.8, 'curve-style': 'bezier' } },
    { selector: 'edge[busy = 1]', style: { width: 6, 'line-color': '#1b5e20' } },
    { selector: 'edge[state = "down"]', style: { 'line-color': '#c62828', 'line-style': 'dashed', color: '#c62828' } },
  ],
  layout: { name: 'preset' },
  wheelSensitivity: 0.3,
});
state.cy = cy;

function setLive(live) {
  state.live = live;
  const el = document.getElementById('live');
  el.textContent = live ? 'live' : 'reconnecting…';
  el.classList.toggle('off', !live);
}

function applyGraph(s) {
  const want = new Set();
  cy.batch(() => {
    for (const site of s.sites) {
      const id = 'site:' + site.name;
      want.add(id);
      let n = cy.getElementById(id);
      if (n.empty()) n = cy.add({ group: 'nodes', data: { id } });
      n.data({ name: site.name, label: site.name === s.site ? site.name + ' (this site)' : site.name, self: site.name === s.site ? 1 : 0, reachable: site.reachable ? 1 : 0 });
    }
    for (const l of s.links) {
      const id = 'link:' + l.a + '|' + l.b;
      if (!want.has('site:' + l.a) || !want.has('site:' + l.b)) continue;
      want.add(id);
      let e = cy.getElementById(id);
      if (e.empty()) e = cy.add({ group: 'edges', data: { id, source: 'site:' + l.a, target: 'site:' + l.b } });
      e.data({ state: l.state, a: l.a, b: l.b, cost: l.cost });
      edgeLabel(e);
    }
    cy.elements().forEach((el) => { if (!want.has(el.id())) el.remove(); });
  });
  const key = s.sites.map((x) => x.name).join(',');
  if (key !== state.layoutKey) {
    state.layoutKey = key;
    cy.layout({ name: s.sites.length > 12 ? 'cose' : 'circle', animate: false, padding: 40 }).run();
  }
}

// bytes formats a rate in bytes per second.
function bytes(bps) {
  if (bps >= 1e9) return (bps / 1e9).toFixed(1) + ' GB/s';
  if (bps >= 1e6) return (bps / 1e6).toFixed(1) + ' MB/s';
  if (bps >= 1e3) return (bps / 1e3).toFixed(1) + ' kB/s';
  return Math.round(bps) + ' B/s';
}

// edgeLabel writes a link's cost, state and the traffic of the last
// sample: on this site's links out (sent to the peer) and in, on the
// links between other sites each way (a→b, b→a); then streams.
function edgeLabel(e) {
  let label = 'cost ' + e.data('cost') + (e.data('state') === 'down' ? ' (down)' : '');
  const r = e.data('rate');
  if (r && e.data('state') === 'up') {
    const ways = r.from === state.snapshot.site
      ? `out ${bytes(r.sentBps)}, in ${bytes(r.receivedBps)}`
      : `${r.from}→${r.to} ${bytes(r.sentBps)}, ${r.to}→${r.from} ${bytes(r.receivedBps)}`;
    label += `\n${ways}, ${r.streamsPerSec} streams/s`;
  }
  e.data('label', label);
}

// rateOf returns the traffic of the last sample on the link between a
// and b as seen from one end (this site's when it is one, else the
// first end that reported), or null.
function rateOf(t, a, b) {
  const peersOf = new Map([[t.site, t.peers], ...(t.remote || []).map((r) => [r.site, r.peers || []])]);
  const ends = a === t.site || b !== t.site ? [[a, b], [b, a]] : [[b, a], [a, b]];
  for (const [from, to] of ends) {
    const p = (peersOf.get(from) || []).find((x) => x.peer === to);
    if (p) return { from, to, sentBps: p.sentBps, receivedBps: p.receivedBps, streamsPerSec: p.streamsPerSec };
  }
  return null;
}

// applyTraffic puts the rates of the last sample on the links: this
// site's from its gateways' counters, the others' from their gateways'
// reports; links with none get none.
function applyTraffic(t) {
  state.traffic = t;
  if (state.snapshot) applyServices(state.snapshot);
  cy.edges().forEach((e) => {
    const r = rateOf(t, e.data('a'), e.data('b'));
    e.data('rate', r);
    e.data('busy', r && (r.sentBps > 0 || r.receivedBps > 0) ? 1 : 0);
    edgeLabel(e);
  });
}

function cell(tr, text) {
  const td = document.createElement('td');
  td.textContent = text;
  tr.appendChild(td);
}

// flowsOf returns the traffic of an address in the last sample, from
// this site and from the others that reported it: a list of { from,
// flows (by target site) }, this site first, or null.
function flowsOf(name) {
  const t = state.traffic;
  if (!t) return null;
  const out = [];
  for (const [from, addrs] of [[t.site, t.addresses], ...(t.remote || []).map((r) => [r.site, r.addresses])]) {
    const a = (addrs || []).find((x) => x.name === name);
    if (a) out.push({ from, flows: a.flows });
  }
  return out.length ? out : null;
}

// rateText says how busy flows are: requests and connections per second,
// and errors when there were any.
function rateText(flows) {
  let req = 0, conn = 0, err = 0;
  for (const f of flows) { req += f.requestsPerSec; conn += f.connectionsPerSec; err += f.errorsPerSec; }
  const parts = [];
  if (req) parts.push(`${req.toFixed(1)} req/s`);
  if (conn) parts.push(`${conn.toFixed(1)} conn/s`);
  if (err) parts.push(`${err.toFixed(1)} errors/s`);
  return parts.join(', ');
}

function applyFlows(s) {
  const el = document.getElementById('flows');
  if (!state.selected) { el.textContent = ''; return; }
  const from = flowsOf(state.selected);
  el.textContent = from
    ? from.map((o) => `${state.selected} from ${o.from}: ` + o.flows.map((f) => `to ${f.site} ${rateText([f])}`).join('; ')).join(' | ')
    : `${state.selected}: no traffic in the last sample.`;
}

function applyServices(s) {
  const filter = document.getElementById('filter').value.trim().toLowerCase();
  const rows = document.getElementById('service-rows');
  const matching = s.services.filter((sv) => !filter || sv.name.toLowerCase().includes(filter));
  const frag = document.createDocumentFragment();
  for (const sv of matching.slice(0, MAX_ROWS)) {
    const tr = document.createElement('tr');
    tr.dataset.name = sv.name;
    if (sv.name === state.selected) tr.classList.add('selected');
    cell(tr, sv.name);
    cell(tr, sv.protocol);
    cell(tr, sv.routing);
    cell(tr, (sv.sites || []).map((x) => `${x.site} (${x.endpoints}, cost ${x.cost})`).join(', ') || '-');
    const from = flowsOf(sv.name);
    cell(tr, from ? rateText(from.flatMap((o) => o.flows)) : '-');
    frag.appendChild(tr);
  }
  rows.replaceChildren(frag);
  const more = matching.length - Math.min(matching.length, MAX_ROWS) + (filter ? 0 : s.truncated || 0);
  document.getElementById('service-more').textContent = more > 0 ? `${more} more: filter to find them.` : '';
  highlightServing(s);
  applyFlows(s);
}

function highlightServing(s) {
  cy.nodes().removeClass('serving');
  const sv = s.services.find((x) => x.name === state.selected);
  if (!sv) return;
  for (const x of sv.sites || []) cy.getElementById('site:' + x.site).addClass('serving');
}

function applyEvents(s) {
  const list = document.getElementById('events');
  const frag = document.createDocumentFragment();
  for (const ev of s.events.slice(0, 50)) {
    const li = document.createElement('li');
    li.className = ev.kind;
    const t = document.createElement('time');
    t.dateTime = ev.time;
    t.textContent = new Date(ev.time).toLocaleTimeString();
    li.append(t, ev.message);
    frag.appendChild(li);
  }
  if (!s.events.length) {
    const li = document.createElement('li');
    li.textContent = 'None since the controller started.';
    frag.appendChild(li);
  }
  list.replaceChildren(frag);
}

function apply(s) {
  state.snapshot = s;
  document.getElementById('site').textContent = s.site;
  const up = s.links.filter((l) => l.state === 'up').length;
  const n = (count, one, many) => `${count} ${count === 1 ? one : many}`;
  document.getElementById('counts').textContent =
    `${n(s.sites.length, 'site', 'sites')}, ${n(up, 'link', 'links')} up, ${s.links.length - up} down, ` +
    `${n(s.services.length + (s.truncated || 0), 'service', 'services')}, ${n(s.clients.connected, 'xDS client', 'xDS clients')}` +
    (s.clients.rejecting ? `, ${s.clients.rejecting} refusing their table` : '');
  applyGraph(s);
  if (state.traffic) applyTraffic(state.traffic);
  applyServices(s);
  applyEvents(s);
  document.body.dataset.version = s.version;
}

document.getElementById('filter').addEventListener('input', () => state.snapshot && applyServices(state.snapshot));
document.getElementById('service-rows').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr');
  if (!tr || !state.snapshot) return;
  state.selected = state.selected === tr.dataset.name ? null : tr.dataset.name;
  applyServices(state.snapshot);
});

const events = new EventSource('events');
events.addEventListener('snapshot', (ev) => apply(JSON.parse(ev.data)));
events.addEventListener('traffic', (ev) => applyTraffic(JSON.parse(ev.data)));
events.addEventListener('open', () => setLive(true));
events.addEventListener('error', () => setLive(false));
