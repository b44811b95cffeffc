// The explorer page's script (longshort.report.explorer embeds it with the data).
const D = JSON.parse(document.getElementById('data').textContent);
const S = {layer: 0, q: D.layers[0].quantities.c ? 'c' : 'h', unit: 0, pos: null,
           span: null, units: [], tau: 0.5};
const cache = {};
function bytes(l, q) {
  const k = l + '/' + q;
  if (!cache[k]) {
    const s = atob(D.layers[l].quantities[q].b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    cache[k] = a;
  }
  return cache[k];
}
function val(l, q, t, u) {
  const Q = D.layers[l].quantities[q], a = bytes(l, q), H = D.layers[l].units;
  return Q.lo[u] + (Q.hi[u] - Q.lo[u]) * a[t * H + u] / 255;
}
const N = D.tokens.length, spans = [];
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function buildText() {
  const box = document.getElementById('text'), starts = new Set(D.starts);
  let seq = 0;
  for (let t = 0; t < N; t++) {
    if (starts.has(t) && D.starts.length > 1) {
      const lab = D.labels.length ? ' · ' + D.labels[seq] : '';
      box.appendChild(el('span', {class: 'seq'}, 'sequence ' + seq + lab)); seq++;
    }
    let tok = D.tokens[t];
    if (D.text && tok === '\n') tok = '↵\n';
    const s = el('span', {'data-i': t}, D.text ? tok : tok + ' ');
    spans.push(s); box.appendChild(s);
  }
  box.addEventListener('click', e => {
    const i = e.target.getAttribute && e.target.getAttribute('data-i');
    if (i !== null && window.getSelection().isCollapsed) { S.pos = +i; draw(); }
  });
  box.addEventListener('mouseup', () => {
    const sel = window.getSelection();
    if (sel.isCollapsed) return;
    const idx = n => { const p = n.nodeType === 3 ? n.parentNode : n;
                       return p.getAttribute ? p.getAttribute('data-i') : null; };
    const a = idx(sel.anchorNode), b = idx(sel.focusNode);
    if (a === null || b === null) return;
    selectSpan(Math.min(+a, +b), Math.max(+a, +b));
  });
}
function colour(v, l, q, u) {
  if (D.signed.includes(q)) {
    const Q = D.layers[l].quantities[q], m = Math.max(Math.abs(Q.lo[u]), Math.abs(Q.hi[u])) || 1;
    const x = v / m;
    return x >= 0 ? `rgba(214,39,40,${x.toFixed(3)})` : `rgba(31,119,180,${(-x).toFixed(3)})`;
  }
  return `rgba(44,160,44,${v.toFixed(3)})`;
}
function paint() {
  const {layer, q, unit} = S;
  for (let t = 0; t < N; t++) {
    spans[t].style.backgroundColor = colour(val(layer, q, t, unit), layer, q, unit);
    spans[t].title = `step ${t}: ${q} = ${val(layer, q, t, unit).toFixed(3)}`;
    spans[t].classList.toggle('pos', t === S.pos);
  }
}
function line(points, w, h, ymin, ymax, colourName, log) {
  const f = y => log ? Math.log10(Math.max(y, 1e-12)) : y;
  const lo = f(ymin), hi = f(ymax) > lo ? f(ymax) : lo + 1, n = Math.max(points.length - 1, 1);
  return `<polyline fill="none" stroke="${colourName}" stroke-width="1.3" points="` +
    points.map((y, i) => `${(i / n * (w - 30) + 25).toFixed(1)},` +
      `${(h - 15 - (f(y) - lo) / (hi - lo) * (h - 25)).toFixed(1)}`).join(' ') + '"/>';
}
function chart(id, inner, caption, w, h) {
  document.getElementById(id).innerHTML =
    `<svg width="${w}" height="${h}">${inner}</svg><div class="note">${caption}</div>`;
}
function drawCarousel() {
  if (!D.carousel) { chart('carousel', '', 'no carousel: this cell has no gate on its state', 380, 20); return; }
  const k = S.pos === null ? 0 : S.pos, g = D.carousel, out = [1];
  const end = Math.min(D.starts.find(s => s > k) || N, k + 300);  // within k's own sequence
  let p = 1;
  for (let t = k + 1; t < end; t++) { p *= val(S.layer, g, t, S.unit); out.push(p); }
  chart('carousel', line(out, 380, 140, 0, 1, '#d62728', false),
    `∏ ${g}<sub>j</sub> from step ${k} (click a token to move it), unit ${S.unit}: ` +
    `${out.length > 100 ? 'after 100 steps ' + out[100].toExponential(2) : ''}`, 380, 140);
}
function drawGradient() {
  const G = D.gradient;
  if (!G || !G.layers[S.layer]) { chart('gradient', '', 'gradient flow: not computed for this layer', 380, 20); return; }
  const Q = G.layers[S.layer], H = D.layers[S.layer].units, s = atob(Q.b64), v = [];
  const T = s.length / H;
  for (let t = 0; t < T; t++) v.push(Q.lo[S.unit] + (Q.hi[S.unit] - Q.lo[S.unit]) * s.charCodeAt(t * H + S.unit) / 255);
  const top = Math.max(...v, 1e-12);
  chart('gradient', line(v, 380, 140, top * 1e-6, top, '#1f77b4', true),
    `|∂ prediction at step ${G.start + T - 1} / ∂ state at step k|, k from ${G.start}, unit ${S.unit} (log scale)`, 380, 140);
}
function drawSaturation() {
  const box = document.getElementById('saturation'); box.innerHTML = '';
  const colours = {i: '#1f77b4', f: '#d62728', o: '#2ca02c', r: '#9467bd', z: '#d62728'};
  D.layers.forEach((L, l) => {
    const gates = Object.keys(L.saturation);
    if (!gates.length) return;
    let dots = '';
    for (const g of gates) {
      const sat = L.saturation[g];
      sat.left.forEach((x, u) => {
        const on = l === S.layer && u === S.unit;
        dots += `<circle data-l="${l}" data-u="${u}" cx="${(20 + x * 170).toFixed(1)}" cy="${(190 - sat.right[u] * 170).toFixed(1)}" r="${on ? 5 : 2.5}" fill="${colours[g] || '#555'}" fill-opacity="${on ? 1 : 0.5}" stroke="${on ? '#000' : 'none'}"><title>${g}, unit ${u}</title></circle>`;
      });
    }
    const legend = gates.map(g => `<tspan fill="${colours[g] || '#555'}">${g}</tspan>`).join(' ');
    const wrap = el('div');
    wrap.innerHTML = `<div>${L.name}: fraction of steps left-saturated (&lt; 0.1, x) and right-saturated (&gt; 0.9, y)</div>` +
      `<svg width="200" height="200"><line x1="20" y1="190" x2="190" y2="20" stroke="#ddd"/>${dots}<text x="150" y="196" font-size="10">${legend}</text></svg>`;
    wrap.querySelector('svg').addEventListener('click', e => {
      const u = e.target.getAttribute('data-u');
      if (u !== null) pick(+e.target.getAttribute('data-l'), S.q, +u);
    });
    box.appendChild(wrap);
  });
}
function drawClasses() {
  if (!D.labels.length) return;
  const names = [...new Set(D.labels)], colours = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  let inner = '', lo = Infinity, hi = -Infinity; const series = [];
  for (const name of names) {
    const sum = [], count = [];
    D.starts.forEach((s, k) => {
      if (D.labels[k] !== name) return;
      const end = k + 1 < D.starts.length ? D.starts[k + 1] : N;
      for (let t = s; t < end; t++) { const i = t - s; sum[i] = (sum[i] || 0) + val(S.layer, S.q, t, S.unit); count[i] = (count[i] || 0) + 1; }
    });
    const mean = sum.map((x, i) => x / count[i]); series.push(mean);
    lo = Math.min(lo, ...mean); hi = Math.max(hi, ...mean);
  }
  series.forEach((m, k) => inner += line(m, 380, 140, lo, hi, colours[k % colours.length], false));
  chart('classes', inner, 'mean ' + S.q + ' of unit ' + S.unit + ' over time, per class: ' +
    names.map((n, k) => `<span style="color:${colours[k % colours.length]}">${n}</span>`).join(', '), 380, 140);
}
function drawUnits() {
  const box = document.getElementById('units'); box.innerHTML = '';
  for (let u = 0; u < D.layers[S.layer].units; u++) {
    const b = el('button', {'data-u': u, class: u === S.unit ? 'on' : ''}, String(u));
    b.onclick = () => pick(S.layer, S.q, u); box.appendChild(b);
  }
}
function draw() {
  document.getElementById('status').textContent =
    `${D.layers[S.layer].name} · ${S.q} · unit ${S.unit}` + (S.pos === null ? '' : ` · step ${S.pos}`);
  paint(); drawUnits(); drawCarousel(); drawGradient(); drawSaturation(); drawClasses();
}
function pick(l, q, u) {
  S.layer = l; S.q = D.layers[l].quantities[q] ? q : Object.keys(D.layers[l].quantities)[0]; S.unit = u;
  document.getElementById('layer').value = l; fillQuantities(); draw();
}
function fillQuantities() {
  const sel = document.getElementById('q'); sel.innerHTML = '';
  for (const q of Object.keys(D.layers[S.layer].quantities)) sel.appendChild(el('option', {value: q}, q));
  sel.value = S.q;
}
function selectSpan(a, b) {
  const l = S.layer, q = S.q, H = D.layers[l].units, tau = S.tau, units = [];
  for (let u = 0; u < H; u++) {
    let on = true;
    for (let t = a; t <= b && on; t++) on = val(l, q, t, u) >= tau;
    if (on && a > 0) on = val(l, q, a - 1, u) < tau;
    if (on && b + 1 < N) on = val(l, q, b + 1, u) < tau;
    if (on) units.push(u);
  }
  S.span = [a, b]; S.units = units;
  const fires = t => units.length > 0 && units.every(u => val(l, q, t, u) >= tau);
  const runs = []; let start = null;
  for (let t = 0; t <= N; t++) {
    const f = t < N && fires(t);
    if (f && start === null) start = t;
    if (!f && start !== null) { if (start !== a) runs.push([start, t - 1]); start = null; }
  }
  spans.forEach(s => s.classList.remove('match'));
  runs.forEach(([s, e]) => { for (let t = s; t <= e; t++) spans[t].classList.add('match'); });
  const box = document.getElementById('vis');
  const snippet = (s, e) => D.tokens.slice(s, e + 1).join(D.text ? '' : ' ').replace(/\n/g, '↵');
  box.innerHTML = `<div>span ${a}–${b}: “${snippet(a, b)}”. ${units.length} unit(s) of ${D.layers[l].name} ` +
    `have ${q} ≥ ${tau} across it and below it on both sides:</div>`;
  const list = el('div', {id: 'vis-units', class: 'units'});
  units.forEach(u => { const b2 = el('button', {}, String(u)); b2.onclick = () => pick(l, q, u); list.appendChild(b2); });
  box.appendChild(list);
  box.appendChild(el('div', {id: 'vis-count'}, `${runs.length} other place(s) where they all fire (outlined in the text):`));
  const tbl = el('table');
  runs.slice(0, 30).forEach(([s, e]) => {
    const tr = el('tr', {class: 'pick'}); tr.appendChild(el('td', {}, `${s}–${e}`)); tr.appendChild(el('td', {}, snippet(s, e).slice(0, 60)));
    tr.onclick = () => spans[s].scrollIntoView({block: 'center'}); tbl.appendChild(tr);
  });
  box.appendChild(tbl);
}
function buildSide() {
  const sel = document.getElementById('layer');
  D.layers.forEach((L, l) => sel.appendChild(el('option', {value: l}, L.name)));
  sel.onchange = () => pick(+sel.value, S.q, Math.min(S.unit, D.layers[+sel.value].units - 1));
  document.getElementById('q').onchange = e => pick(S.layer, e.target.value, S.unit);
  const tau = document.getElementById('tau');
  tau.oninput = () => { S.tau = +tau.value; document.getElementById('tauv').textContent = tau.value;
                        if (S.span) selectSpan(...S.span); };
  const rank = document.getElementById('ranking');
  if (!D.ranking.length) { rank.innerHTML = '<div class="note">No text features here: the ranking needs characters of one text.</div>'; return; }
  const tbl = el('table'); tbl.innerHTML = '<tr><th>feature</th><th>layer</th><th>q</th><th>unit</th><th>r</th></tr>';
  D.ranking.forEach(([f, l, q, u, r]) => {
    const tr = el('tr', {class: 'pick'});
    [f, l, q, u, r.toFixed(3)].forEach(x => tr.appendChild(el('td', {}, String(x))));
    tr.onclick = () => pick(l, q, u); tbl.appendChild(tr);
  });
  rank.appendChild(tbl);
}
buildText(); buildSide(); fillQuantities(); draw();
window.explorer = {state: S, pick, selectSpan, val};
