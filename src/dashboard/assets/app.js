/* Inventory dashboard: vanilla JS, no dependencies. Every value from the API is put in the
   page with textContent or setAttribute only; nothing is ever parsed as HTML. */
(() => {
  'use strict';

  const $ = (sel, root) => (root || document).querySelector(sel);
  const meta = $('meta[name="csrf-token"]');
  const CSRF = meta ? meta.getAttribute('content') || '' : '';
  const SEVS = ['info', 'warning', 'high', 'critical'];
  const SVG = 'http://www.w3.org/2000/svg';

  const arr = (x) => (Array.isArray(x) ? x : []);
  const num = (x) => typeof x === 'number' && isFinite(x);
  const txt = (x) => (x == null ? '—' : String(x));
  const fmtNum = (x) => (num(x) ? String(x) : '—');
  const sevClass = (s) => 'sev-' + (SEVS.indexOf(s) >= 0 ? s : 'unknown');
  const short = (id) => (id == null ? '—' : String(id).slice(0, 8));
  const pad = (n) => String(n).padStart(2, '0');

  // ---------- DOM helpers (text only) ----------
  function add(parent, child) {
    if (child == null || child === false) return;
    if (Array.isArray(child)) child.forEach((c) => add(parent, c));
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  function attrs(e, props) {
    if (!props) return e;
    Object.keys(props).forEach((k) => {
      const v = props[k];
      if (v == null || v === false) return;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, String(v));
    });
    return e;
  }
  function el(tag, props, ...kids) {
    const e = attrs(document.createElement(tag), props);
    add(e, kids);
    return e;
  }
  function svg(tag, props, ...kids) {
    const e = attrs(document.createElementNS(SVG, tag), props);
    add(e, kids);
    return e;
  }
  function fill(parent, kids) {
    parent.textContent = '';
    add(parent, kids);
  }
  const sigs = {};
  function changed(key, data) {
    const s = JSON.stringify(data);
    if (sigs[key] === s) return false;
    sigs[key] = s;
    return true;
  }

  // ---------- formatting ----------
  function hms(ms) {
    if (!num(ms)) return '—';
    const d = new Date(ms);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function dateTime(ms) {
    if (!num(ms)) return '—';
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + hms(ms);
  }
  function isoLocal(s) {
    const t = typeof s === 'string' ? Date.parse(s) : NaN;
    return isNaN(t) ? txt(s) : dateTime(t);
  }
  function dur(sec) {
    if (!num(sec)) return '—';
    const s = Math.floor(Math.max(0, sec));
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min';
    const h = Math.floor(m / 60);
    if (h < 24) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }
  const since = (ms, now) => (num(ms) ? dur((now - ms) / 1000) : '—');
  const pct = (x) => (num(x) ? Math.round(x * 10) / 10 + '%' : '—');
  function fmtMs(v) {
    if (v >= 1000) return +(v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s';
    return +v.toFixed(v >= 10 ? 0 : v >= 1 ? 1 : 2) + ' ms';
  }

  // ---------- API ----------
  class Unauthorized extends Error {}
  let leaving = false;
  async function api(path, post) {
    const init = { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (post) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-CSRF-Token'] = CSRF;
      init.body = '{}';
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      if (!leaving) {
        leaving = true;
        location.assign('/login');
      }
      throw new Unauthorized('not signed in');
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const e = new Error(body && typeof body.error === 'string' ? body.error : 'HTTP ' + res.status);
      e.status = res.status;
      throw e;
    }
    return body && typeof body === 'object' ? body : {};
  }

  // Connection indicator: shown while the last attempt of any poller failed. No console output.
  const lost = new Map();
  function setLost(name, err) {
    if (err) lost.set(name, err);
    else lost.delete(name);
    const conn = $('#conn');
    conn.hidden = lost.size === 0;
    if (lost.size) {
      const e = lost.values().next().value;
      conn.textContent = e.status ? 'server error (' + e.message + '), retrying' : 'connection lost, retrying';
    }
  }

  function poller(name, url, render, ms) {
    let timer = 0;
    let gen = 0;
    const run = async () => {
      clearTimeout(timer);
      const my = ++gen;
      try {
        const data = await api(url());
        if (my !== gen) return;
        render(data);
        setLost(name, null);
      } catch (e) {
        if (e instanceof Unauthorized || my !== gen) return;
        setLost(name, e);
      }
      if (my === gen && !leaving) timer = setTimeout(run, ms);
    };
    return run;
  }

  // ---------- status ----------
  let ready = false;
  function renderStatus(d) {
    const now = num(d.generated_ms) ? d.generated_ms : Date.now();
    renderNow(d.now && typeof d.now === 'object' ? d.now : {}, now);
    renderListeners(arr(d.listeners), now);
    renderQueues(arr(d.queues), now);
    renderWorkers(arr(d.workers), now);
    renderBanner(arr(d.errors));
    $('#updated').textContent = 'updated ' + hms(Date.now());
    if (!ready) {
      ready = true;
      document.body.dataset.ready = '1';
    }
  }

  function renderNow(n, now) {
    const sc = n.severity == null ? 'sev-none' : sevClass(n.severity);
    const c = $('#now-count');
    c.textContent = fmtNum(n.count);
    c.setAttribute('class', 'big ' + sc);
    const b = $('#now-severity');
    b.textContent = n.severity == null ? 'no alert' : String(n.severity);
    b.setAttribute('class', 'badge ' + sc);
    $('#now-threshold').textContent = fmtNum(n.threshold);
    $('#now-percentage').textContent = pct(n.percentage);
    $('#now-changed').textContent = num(n.changed_ms)
      ? 'changed ' + since(n.changed_ms, now) + ' ago'
      : 'no alert broadcast yet';
    const live = $('#now-live');
    live.hidden = !(num(n.live_count) && n.live_count !== n.count);
    live.textContent = live.hidden ? '' : '· live count ' + n.live_count;
    const a = $('#now-alert');
    a.textContent = short(n.alert_id);
    if (n.alert_id != null) a.setAttribute('title', String(n.alert_id));
    else a.removeAttribute('title');
    const slot = $('#now-slot');
    const s = n.slot;
    slot.hidden = !s;
    slot.textContent = s
      ? 'slot ' + txt(s.slot) + ': ' + fmtNum(s.lag_bytes) + ' bytes behind, caught up ' +
        Math.round(Number(s.lag_seconds) || 0) + ' s ago (' + txt(s.wal_status) + ')'
      : '';
  }

  function renderListeners(list, now) {
    const ul = $('#listeners');
    if (!list.length) {
      fill(ul, el('li', { class: 'warn' }, 'no listener running'));
      return;
    }
    fill(ul, list.map((l) => {
      const st = l.state === 'active' || l.state === 'standby' ? 'st-' + l.state : 'st-other';
      return el('li', { 'data-listener': l.id, title: l.id },
        el('span', { class: 'badge ' + st }, txt(l.state)),
        el('span', null, txt(l.host)),
        el('span', { class: 'muted' }, 'pid ' + fmtNum(l.pid)),
        el('span', { class: 'muted' }, 'up ' + since(l.started_ms, now)));
    }));
  }

  function renderQueues(list) {
    $('#queues-empty').hidden = list.length > 0;
    fill($('#queues tbody'), list.map((q) =>
      el('tr', { 'data-queue': q.name },
        el('th', { scope: 'row', class: 'name' }, txt(q.name)),
        el('td', { class: 'n pending' }, fmtNum(q.pending)),
        el('td', { class: 'n delayed' }, fmtNum(q.delayed)),
        el('td', { class: 'n reserved' }, fmtNum(q.reserved)),
        el('td', { class: 'n age' }, q.oldest_pending_age_s == null ? '—' : dur(q.oldest_pending_age_s)),
        el('td', { class: 'n failed' + (q.failed > 0 ? ' bad' : '') }, fmtNum(q.failed)))));
  }

  function renderWorkers(list, now) {
    $('#workers-empty').hidden = list.length > 0;
    fill($('#workers tbody'), list.map((w) => {
      const cur = w.current && typeof w.current === 'object' ? w.current : null;
      return el('tr', { 'data-worker': w.id },
        el('th', { scope: 'row', class: 'name', title: w.id }, txt(w.name != null && w.name !== '' ? w.name : w.id)),
        el('td', { class: 'host' }, txt(w.host)),
        el('td', { class: 'n pid' }, fmtNum(w.pid)),
        el('td', { class: 'queues' }, arr(w.queues).map(String).join(', ') || '—'),
        el('td', { class: 'n uptime' }, since(w.started_ms, now)),
        el('td', { class: 'n done' }, fmtNum(w.done)),
        el('td', { class: 'n retried' }, fmtNum(w.retried)),
        el('td', { class: 'n failed' + (w.failed > 0 ? ' bad' : '') }, fmtNum(w.failed)),
        cur
          ? el('td', { class: 'current', title: cur.id }, txt(cur.kind), el('span', { class: 'muted' }, ' · ' + since(cur.started_ms, now)))
          : el('td', { class: 'current muted' }, 'idle'));
    }));
  }

  function renderBanner(errors) {
    if (!changed('banner', errors)) return;
    $('#banner').hidden = errors.length === 0;
    fill($('#banner-list'), errors.map((e) => el('li', null, txt(e))));
  }

  // ---------- alerts ----------
  function renderAlerts(d) {
    const list = arr(d.alerts);
    $('#alerts-empty').hidden = list.length > 0;
    if (!changed('alerts', list)) return;
    fill($('#alerts tbody'), list.map((a) =>
      el('tr', { 'data-alert': a.alert_id },
        el('td', { class: 'time', title: dateTime(a.time_ms) }, hms(a.time_ms)),
        el('td', { class: 'n count' }, fmtNum(a.count)),
        el('td', { class: 'severity' }, el('span', { class: 'badge ' + sevClass(a.severity) }, txt(a.severity))),
        el('td', { class: 'n percentage' }, pct(a.percentage)),
        el('td', { class: 'jobs' }, arr(a.jobs).map(String).join(', ') || '—'),
        el('td', { class: 'alert' }, el('code', { title: a.alert_id }, short(a.alert_id))))));
  }

  // ---------- failed jobs ----------
  const sel = $('#failed-queue');
  const queueQuery = () => (sel.value ? '?queue=' + encodeURIComponent(sel.value) : '');

  function renderQueueSelect(queues) {
    const cur = sel.value;
    const list = queues.filter((q) => q != null).map(String).sort();
    if (cur && list.indexOf(cur) < 0) list.push(cur);
    if (!changed('fq', list)) return;
    fill(sel, [el('option', { value: '' }, 'all')].concat(list.map((q) => el('option', { value: q }, q))));
    sel.value = cur;
  }

  function renderFailed(d) {
    const jobs = arr(d.jobs);
    renderQueueSelect(arr(d.queues));
    const total = num(d.total) ? d.total : jobs.length;
    $('#failed-total').textContent = total === jobs.length ? '(' + total + ')' : '(' + jobs.length + ' of ' + total + ')';
    $('#failed-empty').hidden = jobs.length > 0;
    $('#retry-all').disabled = jobs.length === 0;
    if (!changed('failed', jobs)) return;
    const tb = $('#failed tbody');
    // keep keyboard focus on the same button of the same job across a refresh
    const f = document.activeElement;
    const tr0 = f && tb.contains(f) ? f.closest('tr') : null;
    const keep = tr0 ? [tr0.getAttribute('data-uuid'), f.className] : null;
    fill(tb, jobs.map((j) => {
      const u = txt(j.uuid);
      return el('tr', { 'data-uuid': j.uuid },
        el('td', { class: 'queue' }, txt(j.queue)),
        el('td', { class: 'failed-at', title: j.failed_at }, isoLocal(j.failed_at)),
        el('td', { class: 'uuid' }, el('code', { title: j.uuid }, short(j.uuid))),
        el('td', { class: 'exception', title: j.exception }, el('span', null, txt(j.exception))),
        el('td', { class: 'actions' }, el('div', null,
          el('button', { type: 'button', class: 'show', 'aria-label': 'show job ' + u }, 'show'),
          el('button', { type: 'button', class: 'retry', 'aria-label': 'retry job ' + u }, 'retry'),
          el('button', { type: 'button', class: 'forget', 'aria-label': 'forget job ' + u }, 'forget'))));
    }));
    if (keep) {
      const row = Array.from(tb.rows).find((r) => r.getAttribute('data-uuid') === keep[0]);
      const b = row && Array.from(row.querySelectorAll('button')).find((x) => x.className === keep[1]);
      (b || sel).focus();
    }
  }

  function say(msg, err) {
    const s = $('#status-line');
    s.textContent = hms(Date.now()) + ' — ' + msg;
    s.setAttribute('class', 'status-line ' + (err ? 'err' : 'ok'));
  }

  async function act(path, buttons) {
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const r = await api(path, true);
      say(typeof r.message === 'string' && r.message ? r.message : 'done', false);
    } catch (e) {
      if (e instanceof Unauthorized) return;
      say(e.status ? e.message : 'request failed: connection lost', true);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
    pollStatus();
    pollFailed();
    pollThroughput();
  }

  // detail panel
  const detail = $('#failed-detail');
  let detailUuid = null;
  let detailBtn = null;
  let rawPayload = '';
  let pretty = false;

  async function showDetail(uuid, btn) {
    detailUuid = uuid;
    detailBtn = btn;
    detail.hidden = false;
    $('.uuid', detail).textContent = uuid;
    $('.meta', detail).textContent = 'loading…';
    $('pre.exception', detail).textContent = '';
    $('pre.payload', detail).textContent = '';
    $('button.format', detail).disabled = true;
    try {
      const d = await api('/api/failed/' + encodeURIComponent(uuid));
      if (detailUuid !== uuid) return;
      $('.meta', detail).textContent = 'queue ' + txt(d.queue) + ' · failed at ' + isoLocal(d.failed_at);
      $('pre.exception', detail).textContent = txt(d.exception);
      rawPayload = d.payload == null ? '' : typeof d.payload === 'string' ? d.payload : JSON.stringify(d.payload);
      pretty = false;
      $('pre.payload', detail).textContent = rawPayload || '—';
      let json = false;
      try { json = typeof JSON.parse(rawPayload) === 'object'; } catch (_) { json = false; }
      const fb = $('button.format', detail);
      fb.disabled = !json;
      fb.textContent = 'format JSON';
    } catch (e) {
      if (e instanceof Unauthorized || detailUuid !== uuid) return;
      $('.meta', detail).textContent = e.status === 404 ? 'this job is no longer in the failed list' : 'could not load: ' + e.message;
    }
    $('h3', detail).focus();
    detail.scrollIntoView({ block: 'nearest' });
  }

  function closeDetail() {
    detail.hidden = true;
    detailUuid = null;
    const back = detailBtn && document.contains(detailBtn) ? detailBtn : sel;
    detailBtn = null;
    back.focus();
  }

  $('button.close', detail).addEventListener('click', closeDetail);
  $('button.format', detail).addEventListener('click', (ev) => {
    pretty = !pretty;
    let t = rawPayload;
    if (pretty) {
      try { t = JSON.stringify(JSON.parse(rawPayload), null, 2); } catch (_) { t = rawPayload; }
    }
    $('pre.payload', detail).textContent = t;
    ev.currentTarget.textContent = pretty ? 'raw' : 'format JSON';
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !detail.hidden) closeDetail();
  });

  $('#failed').addEventListener('click', (ev) => {
    const b = ev.target.closest('button');
    const tr = b && b.closest('tr[data-uuid]');
    if (!tr) return;
    const uuid = tr.getAttribute('data-uuid');
    const base = '/api/failed/' + encodeURIComponent(uuid);
    if (b.classList.contains('show')) {
      showDetail(uuid, b);
    } else if (b.classList.contains('retry')) {
      if (detailUuid === uuid) closeDetail();
      act(base + '/retry', [b]);
    } else if (b.classList.contains('forget')) {
      if (!window.confirm('Forget failed job ' + uuid + '? It will not be run again.')) return;
      if (detailUuid === uuid) closeDetail();
      act(base + '/forget', [b]);
    }
  });

  $('#retry-all').addEventListener('click', (ev) => {
    const q = sel.value;
    if (!window.confirm('Queue again all failed jobs' + (q ? ' of queue "' + q + '"' : '') + '?')) return;
    act('/api/failed/retry-all' + queueQuery(), [ev.currentTarget]);
  });
  sel.addEventListener('change', () => pollFailed());

  // ---------- throughput chart ----------
  let tp = null;
  let mode = 'jobs';
  let hover = -1;
  const chart = $('#chart');
  const tip = $('#tp-tip');
  const TIP = 'hover or tap the chart for values';

  function series() {
    const qs = tp && tp.queues && typeof tp.queues === 'object' ? tp.queues : {};
    const names = Object.keys(qs).sort();
    let n = arr(tp && tp.minutes).length;
    names.forEach((k) => { n = Math.max(n, arr(qs[k] && qs[k].done).length); });
    return {
      n,
      list: names.map((name, i) => {
        const q = qs[name] || {};
        const done = arr(q.done), failed = arr(q.failed), rt = arr(q.runtime_ms);
        const vals = [];
        let jobsTotal = 0, rtTotal = 0;
        for (let k = 0; k < n; k++) {
          const jobs = (+done[k] || 0) + (+failed[k] || 0);
          const r = +rt[k] || 0;
          jobsTotal += jobs;
          rtTotal += r;
          vals.push(mode === 'jobs' ? jobs : jobs ? r / jobs : 0);
        }
        return { name, cls: 's' + (i % 8), vals, jobsTotal, avg: jobsTotal ? rtTotal / jobsTotal : 0 };
      }),
    };
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    const f = v / e;
    const m = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((k) => f <= k + 1e-9) * e;
    return mode === 'jobs' ? Math.max(1, Math.ceil(m)) : m;
  }
  const fmtVal = (v) => (mode === 'jobs' ? String(+v.toFixed(1)) : fmtMs(v));
  const ageLabel = (a) => (a === 0 ? 'now' : a + ' min ago');

  function renderChart() {
    const { n, list } = series();
    fill($('#legend'), list.map((s) =>
      el('li', null, el('span', { class: 'swatch ' + s.cls }), s.name + ' ',
        el('span', { class: 'muted' }, mode === 'jobs' ? s.jobsTotal + ' jobs' : 'avg ' + fmtMs(s.avg)))));
    if (!list.length || n < 2) {
      fill(chart, el('p', { class: 'empty' }, 'no throughput data yet'));
      tip.textContent = '';
      return;
    }
    const W = Math.max(280, Math.round(chart.clientWidth || 600));
    const H = W < 560 ? 170 : 220;
    const L = 52, R = 10, T = 10, B = 24;
    const pw = W - L - R, ph = H - T - B;
    let maxV = 0;
    list.forEach((s) => s.vals.forEach((v) => { if (v > maxV) maxV = v; }));
    const top = niceMax(maxV);
    const x = (i) => L + (pw * i) / (n - 1);
    const y = (v) => T + ph * (1 - v / top);
    const root = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + H, width: '100%', role: 'img',
      'aria-label': (mode === 'jobs' ? 'jobs per minute' : 'average run time per job') + ' per queue, last hour',
    });
    [0, 0.5, 1].forEach((f) => {
      root.appendChild(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(top * f), y2: y(top * f) }));
      root.appendChild(svg('text', { class: 'axis', x: L - 6, y: y(top * f) + 4, 'text-anchor': 'end' }, fmtVal(top * f)));
    });
    [60, 45, 30, 15, 0].forEach((a) => {
      const i = Math.max(0, n - 1 - a);
      const anchor = i === 0 ? 'start' : a === 0 ? 'end' : 'middle';
      root.appendChild(svg('text', { class: 'axis', x: x(i), y: H - 6, 'text-anchor': anchor }, a === 0 ? 'now' : a + (pw < 420 ? 'm' : ' min')));
    });
    list.forEach((s) => {
      const pts = s.vals.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
      root.appendChild(svg('polyline', { class: 'line ' + s.cls, points: pts }, svg('title', null, s.name)));
    });
    const cursor = svg('line', { class: 'cursor', y1: T, y2: T + ph, x1: 0, x2: 0, visibility: 'hidden' });
    root.appendChild(cursor);
    const hit = svg('rect', { class: 'hit', x: L, y: T, width: pw, height: ph });
    root.appendChild(hit);

    const showAt = (i) => {
      hover = i;
      if (i < 0 || i >= n) {
        cursor.setAttribute('visibility', 'hidden');
        tip.textContent = TIP;
        return;
      }
      cursor.setAttribute('x1', x(i));
      cursor.setAttribute('x2', x(i));
      cursor.setAttribute('visibility', 'visible');
      const mins = arr(tp.minutes);
      const when = num(mins[i]) ? hms(mins[i] * 60000) + ' (' + ageLabel(n - 1 - i) + ')' : ageLabel(n - 1 - i);
      tip.textContent = when + ': ' + list.map((s) => s.name + ' ' + fmtVal(s.vals[i])).join(' · ');
    };
    const onMove = (ev) => {
      const r = root.getBoundingClientRect();
      if (!r.width) return;
      const vx = ((ev.clientX - r.left) * W) / r.width;
      showAt(Math.min(n - 1, Math.max(0, Math.round(((vx - L) / pw) * (n - 1)))));
    };
    root.addEventListener('pointermove', onMove);
    root.addEventListener('pointerdown', onMove);
    root.addEventListener('pointerleave', (ev) => { if (ev.pointerType === 'mouse') showAt(-1); });
    fill(chart, root);
    showAt(hover);
  }

  function renderThroughput(d) {
    tp = d;
    renderChart();
  }

  function setMode(m) {
    mode = m;
    $('#tp-jobs').setAttribute('aria-pressed', String(m === 'jobs'));
    $('#tp-runtime').setAttribute('aria-pressed', String(m === 'runtime'));
    renderChart();
  }
  $('#tp-jobs').addEventListener('click', () => setMode('jobs'));
  $('#tp-runtime').addEventListener('click', () => setMode('runtime'));
  let lastW = 0;
  let raf = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(raf);
    raf = requestAnimationFrame(() => {
      if (tp && chart.clientWidth !== lastW) {
        lastW = chart.clientWidth;
        renderChart();
      }
    });
  });

  // ---------- start ----------
  const pollStatus = poller('status', () => '/api/status', renderStatus, 2000);
  const pollAlerts = poller('alerts', () => '/api/alerts', renderAlerts, 5000);
  const pollFailed = poller('failed', () => '/api/failed' + queueQuery(), renderFailed, 5000);
  const pollThroughput = poller('throughput', () => '/api/throughput', renderThroughput, 30000);
  pollStatus();
  pollAlerts();
  pollFailed();
  pollThroughput();
})();
