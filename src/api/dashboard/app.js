// appliance dashboard: vanilla JS, no build step. All data reaches the DOM via
// textContent / createElement, never innerHTML.
'use strict';

const KEY = 'appliance.token';
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(KEY) || '';

// ---------- small helpers ----------

// el('a', {class, href, dataset, onclick, text}, ...children): strings become text nodes.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

// Query string without empty values (the server treats `provider=` as a filter).
function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

const tf = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dtf = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
const mf = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

// RFC 3339 UTC -> short local time (time only when today).
function shortTime(s) {
  const d = new Date(s);
  if (!s || isNaN(d)) return s || '—';
  return d.toDateString() === new Date().toDateString() ? tf.format(d) : dtf.format(d);
}
function longTime(s) {
  const d = new Date(s);
  return !s || isNaN(d) ? (s || '—') : d.toLocaleString();
}
function timeEl(s) {
  return el('time', { datetime: s, title: longTime(s) }, shortTime(s));
}
const trunc = (s, n) => (s == null ? '—' : (s = String(s)).length > n ? s.slice(0, n - 1) + '…' : s);
const num = (v) => (typeof v === 'number' ? nf.format(v) : v == null ? '—' : String(v));
const money = (v) => (typeof v === 'number' ? mf.format(v) : v == null ? '—' : String(v));
function fmtAge(s) {
  if (s == null) return '—';
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}
function badge(status) {
  return el('span', { class: 'badge b-' + (status || 'none') }, status || 'none');
}
function cashText(balances) {
  return (balances || []).map((b) => `${b.currency || ''} ${money(b.cash)}`.trim()).join(', ') || '—';
}
function table(head, rows) {
  return el('div', { class: 'scroll' }, el('table', { class: 'grid' },
    el('thead', null, el('tr', null, head.map((h) => el('th', null, h)))),
    el('tbody', null, rows)));
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

// fetch with the token; a 401 sends the user back to the prompt.
async function req(method, path) {
  const t = token;
  let res;
  try {
    res = await fetch(path, { method, headers: { Authorization: 'Bearer ' + t, Accept: 'application/json' }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'cannot reach the server', 'network');
  }
  if (t !== token) throw new ApiError(0, '', 'stale'); // logged out meanwhile
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.status === 401) {
    logout('The token was refused; enter it again.');
    throw new ApiError(401, '', 'stale');
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `HTTP ${res.status}`, data && data.code);
  return data;
}

// Show an API error in the banner (ignores errors already handled).
function fail(e) {
  if (e && e.code === 'stale') return;
  console.warn(e);
  $('banner-text').textContent = (e && e.message) || String(e);
  $('banner').hidden = false;
}
$('banner-close').addEventListener('click', () => { $('banner').hidden = true; });

// ---------- login / logout ----------

function showLogin(msg) {
  $('app').hidden = true;
  $('logout').hidden = true;
  $('conn-status').hidden = true;
  $('login').hidden = false;
  $('token-error').textContent = msg || '';
  $('token-error').hidden = !msg;
  $('token').focus();
}

$('token-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  const btn = $('token-submit');
  if (!t) return;
  btn.disabled = true;
  try {
    const res = await fetch('/api/events?limit=1', { headers: { Authorization: 'Bearer ' + t }, cache: 'no-store' });
    if (res.status === 401) return showLogin('wrong token');
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      return showLogin((data && data.error) || `HTTP ${res.status}`);
    }
    token = t;
    sessionStorage.setItem(KEY, t);
    $('token').value = '';
    start();
  } catch {
    showLogin('cannot reach the server');
  } finally {
    btn.disabled = false;
  }
});

$('logout').addEventListener('click', () => logout());

// Forget the token and every piece of data on the page.
function logout(msg) {
  token = '';
  sessionStorage.removeItem(KEY);
  closeStream();
  clearInterval(statsTimer);
  feed.gen++;
  feed.rows.clear();
  $('events').replaceChildren();
  $('detail-body').replaceChildren();
  $('replay-result').textContent = '';
  $('dead-rows').replaceChildren();
  for (const id of ['snap-conns', 'snap-accounts', 'holdings-rows', 'chart', 'legend']) $(id).replaceChildren();
  $('holdings').hidden = true;
  $('banner').hidden = true;
  stats.perMinute.clear();
  stats.providers = [];
  for (const id of ['st-pending', 'st-dead', 'st-age']) $(id).textContent = '–';
  detailId = null;
  showLogin(msg);
}

function start() {
  $('login').hidden = true;
  $('token-error').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  $('conn-status').hidden = false;
  resetFeed();
  loadStats();
  clearInterval(statsTimer);
  statsTimer = setInterval(loadStats, 30000);
  probeSnaptrade();
  route();
}

// ---------- routing: #/events, #/event/ID, #/dead, #/snaptrade ----------

let snapOn = false;

function show(view) {
  for (const v of ['feed', 'detail', 'dead', 'snaptrade']) $(v).hidden = v !== view;
  for (const a of document.querySelectorAll('.tabs a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function route() {
  if (!token) return;
  const h = location.hash;
  const m = h.match(/^#\/event\/(\d+)$/);
  if (m) {
    show('detail');
    loadDetail(m[1]).catch((e) => {
      fail(e);
      if (e.code !== 'stale') $('detail-body').replaceChildren(el('p', { class: 'muted' }, 'Could not load this event.'));
    });
  }
  else if (h === '#/dead') { show('dead'); loadDead(false).catch(fail); }
  else if (h === '#/snaptrade' && snapOn) { show('snaptrade'); loadSnap().catch(fail); }
  else { show('feed'); queueDraw(); }
}
window.addEventListener('hashchange', route);

// ---------- live feed ----------

const feed = { filters: { provider: '', type: '', status: '' }, rows: new Map(), nextBefore: null, es: null, gen: 0, retry: 0 };
const MAX_ROWS = 1000;

// Same glob as the server: only `*` is special.
function globMatch(glob, text) {
  const re = glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp('^' + re + '$', 's').test(text || '');
}
function matchesFilters(ev) {
  const f = feed.filters;
  return (!f.provider || ev.provider === f.provider) &&
    (!f.type || globMatch(f.type, ev.type)) &&
    (!f.status || ev.status === f.status);
}

function eventRow(ev) {
  const a = el('a', { class: 'event-row', href: '#/event/' + ev.id, dataset: { eventId: ev.id } },
    el('span', { class: 'c-time' }, timeEl(ev.received_at)),
    el('span', { class: 'c-prov' }, ev.provider),
    el('span', { class: 'c-type' }, ev.type || '—'),
    el('span', { class: 'c-id', title: ev.event_id }, trunc(ev.event_id, 28)),
    el('span', { class: 'c-status' }, badge(ev.status)));
  return el('li', { dataset: { id: ev.id } }, a);
}

// Insert keeping newest (highest id) first; duplicates are skipped.
function insertEvent(ev, flash) {
  const id = Number(ev.id);
  if (feed.rows.has(id)) return;
  const li = eventRow(ev);
  const list = $('events');
  let before = null;
  for (const other of list.children) if (Number(other.dataset.id) < id) { before = other; break; }
  list.insertBefore(li, before);
  feed.rows.set(id, li);
  if (flash) li.classList.add('new');
  $('events-empty').hidden = true;
  while (feed.rows.size > MAX_ROWS) { // keep the page bounded; "load more" can fetch them again
    const last = list.lastElementChild;
    feed.rows.delete(Number(last.dataset.id));
    last.remove();
    feed.nextBefore = Number(list.lastElementChild.dataset.id);
    $('load-more').hidden = false;
  }
}

function setRowStatus(id, status) {
  const li = feed.rows.get(Number(id));
  if (li) li.querySelector('.c-status').replaceChildren(badge(status));
}

async function loadEvents(more) {
  const g = feed.gen;
  const f = feed.filters;
  const data = await req('GET', '/api/events' + qs({
    limit: 50, provider: f.provider, type: f.type, status: f.status, before: more ? feed.nextBefore : '',
  }));
  if (g !== feed.gen) return; // filters changed meanwhile
  for (const ev of data.events || []) { chartSeen.add(ev.id); insertEvent(ev, false); }
  feed.nextBefore = data.next_before ?? null;
  $('load-more').hidden = feed.nextBefore == null;
  $('events-empty').hidden = feed.rows.size > 0;
}

// New filters (or a fresh start): empty the list, reopen the stream, then fetch.
// The stream is opened first so nothing stored in between is missed.
function resetFeed() {
  feed.gen++;
  feed.rows.clear();
  feed.nextBefore = null;
  $('events').replaceChildren();
  $('load-more').hidden = true;
  $('gap-notice').hidden = true;
  openStream();
  loadEvents(false).catch(fail);
}

function readFilters() {
  const f = { provider: $('f-provider').value.trim(), type: $('f-type').value.trim(), status: $('f-status').value };
  const o = feed.filters;
  if (f.provider === o.provider && f.type === o.type && f.status === o.status) return;
  feed.filters = f;
  resetFeed();
}
let filterTimer;
$('filters').addEventListener('submit', (e) => { e.preventDefault(); readFilters(); });
$('f-status').addEventListener('change', readFilters);
for (const id of ['f-provider', 'f-type']) {
  $(id).addEventListener('input', () => { clearTimeout(filterTimer); filterTimer = setTimeout(readFilters, 500); });
}
$('load-more').addEventListener('click', () => loadEvents(true).catch(fail));

// ---------- Server-Sent Events ----------

function setConn(state) {
  const c = $('conn-status');
  c.textContent = state;
  c.className = 'conn conn-' + state;
}

function closeStream() {
  if (feed.es) feed.es.close();
  feed.es = null;
  clearTimeout(feed.retry);
}

function openStream() {
  closeStream();
  const f = feed.filters;
  // EventSource cannot send headers, so the token travels in the query.
  const es = new EventSource('/api/stream' + qs({ token, provider: f.provider, type: f.type }));
  feed.es = es;
  setConn('connecting');
  es.onopen = () => setConn('live');
  es.onerror = () => {
    if (es !== feed.es) return;
    if (es.readyState !== EventSource.CLOSED) return setConn('reconnecting'); // the browser retries
    // Closed for good (an HTTP error such as 401): check the token, then start over.
    setConn('offline');
    feed.retry = setTimeout(() => {
      req('GET', '/api/events?limit=1').then(() => { if (token) resetFeed(); }).catch((e) => {
        if (e.code !== 'stale') { fail(e); feed.retry = setTimeout(openStream, 10000); }
      });
    }, 3000);
  };
  es.addEventListener('webhook', (m) => {
    const ev = parse(m.data);
    if (!ev) return;
    bumpChart(ev);
    if (matchesFilters(ev)) insertEvent(ev, true);
  });
  es.addEventListener('delivery', (m) => {
    const d = parse(m.data);
    if (!d) return;
    setRowStatus(d.event, d.status);
    if (String(d.event) === detailId) refreshDetailSoon();
  });
  es.addEventListener('gap', () => { $('gap-notice').hidden = false; });
}

function parse(s) {
  try { return JSON.parse(s); } catch { return null; }
}

// ---------- event detail ----------

let detailId = null;
let detailTimer;

function refreshDetailSoon() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => { if (detailId && !$('detail').hidden) loadDetail(detailId, true).catch(fail); }, 400);
}

async function loadDetail(id, keep) {
  if (!keep || id !== detailId) {
    $('replay-result').textContent = '';
    if (id !== detailId) $('detail-body').replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  }
  detailId = id;
  $('detail-h').textContent = 'Event #' + id;
  const ev = await req('GET', '/api/events/' + encodeURIComponent(id));
  if (detailId !== id) return;
  setRowStatus(ev.id, ev.status);
  $('detail-body').replaceChildren(renderDetail(ev));
}

function renderDetail(ev) {
  const frag = document.createDocumentFragment();
  const kv = (k, v) => [el('dt', null, k), el('dd', null, v)];
  frag.append(el('dl', { class: 'kv' },
    kv('Provider', ev.provider), kv('Type', ev.type || '—'),
    kv('Event id', el('code', null, ev.event_id ?? '—')),
    kv('Received', el('time', { datetime: ev.received_at }, longTime(ev.received_at))),
    kv('Source IP', ev.source_ip || '—'), kv('Status', badge(ev.status)),
    kv('Size', num(ev.size) + ' bytes'), kv('Verification', ev.verification || '—')));

  const ds = ev.deliveries || [];
  frag.append(el('h3', null, `Deliveries (${ds.length})`));
  if (!ds.length) frag.append(el('p', { class: 'muted' }, 'No route matched this event.'));
  for (const d of ds) frag.append(renderDelivery(d));
  // Body: pretty JSON when it parses, else raw text; null means binary.
  frag.append(el('h3', null, 'Body'));
  if (ev.body == null) {
    frag.append(el('p', { class: 'muted' }, `binary, ${ev.size} bytes`));
    if (ev.body_base64) frag.append(el('details', null, el('summary', null, 'base64'), el('pre', { class: 'code' }, ev.body_base64)));
  } else {
    let text = ev.body;
    try { text = JSON.stringify(JSON.parse(ev.body), null, 2); } catch { /* raw */ }
    frag.append(el('pre', { class: 'code' }, text || '(empty)'));
  }

  frag.append(el('h3', null, 'Headers'));
  frag.append(table(['Name', 'Value'], (ev.headers || []).map(([n, v]) =>
    el('tr', null, el('td', { class: 'hname' }, n), el('td', { class: 'hval' }, v)))));

  return frag;
}

function renderDelivery(d) {
  const head = el('div', { class: 'dhead' },
    el('strong', null, d.route), badge(d.status),
    el('span', { class: 'muted' }, `${d.attempt_count ?? (d.attempts || []).length} attempt(s)`));
  if (d.status === 'pending' && d.next_attempt_at) head.append(el('span', { class: 'muted' }, 'next ', timeEl(d.next_attempt_at)));
  if (d.status === 'dead') head.append(retryButton(d.id, () => refreshDetailSoon()));
  const card = el('div', { class: 'card delivery' }, head);
  if (d.last_error) card.append(el('p', { class: 'error' }, d.last_error));
  const list = el('ol', { class: 'attempts' });
  for (const a of d.attempts || []) {
    const code = a.status_code != null ? `HTTP ${a.status_code}` : a.exit_code != null ? `exit ${a.exit_code}` : null;
    const li = el('li', null, el('div', { class: 'aline' },
      timeEl(a.at), el('span', null, a.duration_ms != null ? `${num(a.duration_ms)} ms` : null),
      code && el('span', { class: 'code-pill' }, code), a.error && el('span', { class: 'error' }, a.error)));
    if (a.response_excerpt) li.append(el('pre', { class: 'code excerpt' }, a.response_excerpt));
    list.append(li);
  }
  if (list.children.length) card.append(list);
  return card;
}

// Retry button for a dead delivery: 202 queued, 409 not dead.
function retryButton(id, done) {
  const b = el('button', { type: 'button', class: 'small' }, 'Retry');
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await req('POST', `/api/deliveries/${encodeURIComponent(id)}/retry`);
      b.textContent = 'queued';
      if (done) done();
    } catch (e) {
      if (e.status === 409) b.textContent = 'not dead';
      else { b.disabled = false; fail(e); }
    }
  });
  return b;
}

$('replay').addEventListener('click', async () => {
  const id = detailId;
  if (!id) return;
  const b = $('replay');
  b.disabled = true;
  try {
    const r = await req('POST', `/api/events/${encodeURIComponent(id)}/replay`);
    $('replay-result').textContent = `replayed: ${(r && r.deliveries || []).length} deliveries`;
    await loadDetail(id, true);
  } catch (e) {
    fail(e);
  } finally {
    b.disabled = false;
  }
});

// ---------- dead letters ----------

let deadBefore = null;

async function loadDead(more) {
  const data = await req('GET', '/api/deliveries' + qs({ status: 'dead', limit: 100, before: more ? deadBefore : '' }));
  const rows = (data.deliveries || []).map((d) => {
    const tr = el('tr', null,
      el('td', null, timeEl(d.updated_at || d.created_at)), el('td', null, d.provider ?? '—'),
      el('td', null, d.type ?? '—'), el('td', null, d.route), el('td', { class: 'num' }, num(d.attempts)),
      el('td', { class: 'err', title: d.last_error || '' }, trunc(d.last_error, 120)),
      el('td', { class: 'actions' }, retryButton(d.id, () => tr.classList.add('done')),
        el('a', { href: '#/event/' + d.event }, 'event')));
    return tr;
  });
  if (more) $('dead-rows').append(...rows);
  else $('dead-rows').replaceChildren(...rows);
  deadBefore = data.next_before ?? null;
  $('dead-more').hidden = deadBefore == null;
  $('dead-empty').hidden = $('dead-rows').children.length > 0;
}
$('dead-refresh').addEventListener('click', () => loadDead(false).catch(fail));
$('dead-more').addEventListener('click', () => loadDead(true).catch(fail));

// ---------- SnapTrade ----------

// The tab is shown only when the API answers (404 not_configured hides it).
async function probeSnaptrade() {
  try {
    await req('GET', '/api/snaptrade/connections');
    snapOn = true;
  } catch (e) {
    snapOn = false;
    if (e.status !== 404 && e.code !== 'stale') console.warn('snaptrade', e.message);
  }
  $('tab-snaptrade').hidden = !snapOn;
  if (location.hash === '#/snaptrade') route();
}

async function loadSnap() {
  const user = $('snap-user').value.trim();
  const [c, a] = await Promise.all([
    req('GET', '/api/snaptrade/connections' + qs({ user_id: user })),
    req('GET', '/api/snaptrade/accounts' + qs({ user_id: user })),
  ]);
  $('snap-conns').replaceChildren(...(c.connections || []).map((x) => el('tr', null,
    el('td', { title: x.authorization_id }, x.brokerage || x.authorization_id), el('td', null, x.user_id),
    el('td', null, badge(x.status)), el('td', { title: x.detail || '' }, x.last_event || '—'),
    el('td', null, timeEl(x.updated_at)))));
  $('snap-accounts').replaceChildren(...(a.accounts || []).map((x) => el('tr', null,
    el('td', null, el('button', { type: 'button', class: 'link', onclick: () => loadHoldings(x).catch(fail) },
      [x.name || x.account_id, x.number ? ` (${x.number})` : ''].join(''))),
    el('td', null, x.institution || '—'), el('td', null, x.user_id),
    el('td', null, cashText(x.balances)), el('td', null, timeEl(x.synced_at)))));
  if (!c.connections?.length) $('snap-conns').append(el('tr', null, el('td', { colspan: 5, class: 'muted' }, 'No connections.')));
  if (!a.accounts?.length) $('snap-accounts').append(el('tr', null, el('td', { colspan: 5, class: 'muted' }, 'No accounts.')));
}
$('snap-filter').addEventListener('submit', (e) => {
  e.preventDefault();
  $('holdings').hidden = true;
  loadSnap().catch(fail);
});

async function loadHoldings(acct) {
  const data = await req('GET', '/api/snaptrade/holdings' + qs({ account_id: acct.account_id }));
  $('holdings-h').textContent = 'Holdings: ' + (acct.name || acct.account_id);
  $('holdings-rows').replaceChildren(...(data.holdings || []).map((h) => el('tr', null,
    el('td', null, h.symbol), el('td', { class: 'num' }, num(h.units)), el('td', { class: 'num' }, money(h.price)),
    el('td', { class: 'num' }, money(h.market_value)), el('td', null, h.currency || '—'))));
  if (!data.holdings?.length) $('holdings-rows').append(el('tr', null, el('td', { colspan: 5, class: 'muted' }, 'No holdings.')));
  $('holdings-cash').textContent = 'Cash: ' + cashText(data.balances);
  $('holdings').hidden = false;
  $('holdings').scrollIntoView({ block: 'nearest' });
}

// ---------- stats tiles and chart ----------

const stats = { perMinute: new Map(), providers: [] }; // minute ms -> Map(provider -> count)
const chartSeen = new Set(); // event ids already counted, so reconnect replays don't double count
const colors = new Map();
const PALETTE = ['#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4', '#ec4899', '#84cc16'];
let statsTimer;
let drawQueued = false;

const colorOf = (p) => {
  if (!colors.has(p)) colors.set(p, PALETTE[colors.size % PALETTE.length]);
  return colors.get(p);
};
const minuteOf = (t) => Math.floor(t / 60000) * 60000;

async function loadStats() {
  let s;
  try { s = await req('GET', '/api/stats'); } catch (e) { return fail(e); }
  const o = s.outbox || {};
  $('st-pending').textContent = num(o.pending);
  $('st-dead').textContent = num(o.dead);
  $('st-age').textContent = fmtAge(o.oldest_pending_age_s);
  stats.perMinute.clear();
  for (const r of s.per_minute || []) {
    const m = minuteOf(Date.parse(r.minute));
    if (isNaN(m)) continue;
    const b = stats.perMinute.get(m) || new Map();
    b.set(r.provider, (b.get(r.provider) || 0) + r.count);
    stats.perMinute.set(m, b);
  }
  stats.providers = s.providers || [];
  if (chartSeen.size > 5000) chartSeen.clear();
  drawChart();
}

// Count a streamed event in the current chart until the next stats refresh.
function bumpChart(ev) {
  if (chartSeen.has(ev.id)) return;
  chartSeen.add(ev.id);
  const m = minuteOf(Date.parse(ev.received_at));
  if (isNaN(m) || m < minuteOf(Date.now()) - 59 * 60000) return;
  const b = stats.perMinute.get(m) || new Map();
  b.set(ev.provider, (b.get(ev.provider) || 0) + 1);
  stats.perMinute.set(m, b);
  let p = stats.providers.find((x) => x.provider === ev.provider);
  if (!p) stats.providers.push(p = { provider: ev.provider, last_hour: 0, last_day: 0 });
  p.last_hour++; p.last_day++;
  queueDraw();
}
function queueDraw() {
  if (drawQueued || !token) return;
  drawQueued = true;
  requestAnimationFrame(() => { drawQueued = false; drawChart(); });
}
window.addEventListener('resize', queueDraw);

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

// Stacked bars, one per minute of the last hour, one colour per provider.
function drawChart() {
  const W = Math.max(280, $('chart').clientWidth || 600), H = 150, L = 30, B = 18, T = 8;
  const now = minuteOf(Date.now());
  const mins = Array.from({ length: 60 }, (_, i) => now - (59 - i) * 60000);
  const totals = mins.map((m) => [...(stats.perMinute.get(m) || new Map()).values()].reduce((a, b) => a + b, 0));
  const max = Math.max(2, Math.ceil(Math.max(...totals) / 2) * 2); // even, so the middle tick is whole
  const ph = H - B - T, bw = (W - L) / 60;
  const root = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', 'aria-hidden': 'true' });
  for (const f of [0, 0.5, 1]) { // grid lines and y labels
    const y = T + ph - f * ph;
    root.append(svg('line', { x1: L, x2: W, y1: y, y2: y, class: 'grid-line' }));
    root.append(svg('text', { x: L - 4, y: y + 3, 'text-anchor': 'end', class: 'axis' }, String(max * f)));
  }
  mins.forEach((m, i) => {
    let y = T + ph;
    for (const [p, n] of [...(stats.perMinute.get(m) || new Map())].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const h = (n / max) * ph;
      y -= h;
      const r = svg('rect', { x: L + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: h, fill: colorOf(p) });
      r.append(svg('title', {}, `${tf.format(new Date(m))} ${p}: ${n}`));
      root.append(r);
    }
  });
  [['-60m', L, 'start'], ['-30m', L + 30 * bw, 'middle'], ['now', W, 'end']].forEach(([t, x, a]) =>
    root.append(svg('text', { x, y: H - 4, 'text-anchor': a, class: 'axis' }, t)));
  $('chart').replaceChildren(root);
  const provs = [...stats.providers].sort((a, b) => (a.provider < b.provider ? -1 : 1));
  $('legend').replaceChildren(...provs.map((p) => el('span', { class: 'leg' },
    el('i', { style: `background:${colorOf(p.provider)}` }), p.provider,
    el('small', null, ` ${num(p.last_hour)}/h · ${num(p.last_day)}/d`))));
  if (!provs.length) $('legend').append(el('span', { class: 'muted' }, 'No events in the last day.'));
}

// ---------- boot ----------

if (token) start();
else showLogin();
