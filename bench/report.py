#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""One table of every libpartd benchmark against its baseline (issue 6).

    /usr/bin/python3 bench/report.py [--in DIR] [--out DIR] [--no-plots]

Reads whatever results bench/run left in --in (default build-bench/):
  bench_core.json   stores vs raw syscall / memcpy floors   (bench_core)
  ref_core.json     the same workloads on Python partd       (ref_core.py)
  bench_codec.csv   codec layers vs the bare codec; codec(File) vs partd
  bench_zmq.csv     Server/Client vs a raw libzmq loop; vs partd's
  bench_py.json     cpartd vs partd through Python; dask's disk shuffle
                    with cpartd, with partd, and dask's tasks shuffle
  sweep.json        `partd demo` over records / partitions / workers
  logsweep.json     `partd demo` File vs Log, direct and served, 1..65536
                    partitions, beside page-cache write and read floors
A missing file is reported and skipped.  Prints one table (group, benchmark,
ours, baseline, ratio, target, met/missed/info) and writes into --out
(default docs/bench/): results.csv, results.json (with the machine: date,
nproc, CPU model, kernel, load), results.md (the table as Markdown, for the
README), and with matplotlib (Debian's python3-matplotlib, Agg backend)
ratios.png (every ratio, log scale, with its target) and sweep.png
(throughput against records, partitions and workers, with a +-20% band
around each sweep's median).

Ratios: "ours / baseline" as speeds (higher is better) except where the
target says "<=" (a time or memory ratio: lower is better).
Exit status: 0, or 2 when no result file was found.
"""
import argparse
import csv
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine():
    cpu = ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
            'nproc': os.cpu_count(), 'cpu': cpu or platform.processor(),
            'kernel': platform.release(), 'loadavg': os.getloadavg()[0]}


def run_demo(cmd, tmpdir, shuffle, read):
    """Runs `partd demo` (cmd, a list), with TMPDIR=tmpdir when given;
    returns its standard output and the matches of the regexes shuffle and
    read on it.  Raises RuntimeError with its output when it failed, did
    not say OK or printed no figures."""
    import subprocess
    env = dict(os.environ)
    if tmpdir:
        env['TMPDIR'] = tmpdir
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env)
    s, r = shuffle.search(p.stdout), read.search(p.stdout)
    if p.returncode != 0 or not s or not r or 'partd demo: OK' not in p.stdout:
        raise RuntimeError('%s: exit %d\n%s%s' % (' '.join(cmd), p.returncode,
                                                  p.stdout, p.stderr))
    return p.stdout, s, r


def write_csv(path, cols, rows):
    """rows (dicts) into the CSV file at path, columns cols (other keys
    left out)."""
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, cols, extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)


def fmt(x, unit=''):
    """A rate or size, short: 1.23M, 456k, 7.8."""
    if x is None:
        return '-'
    a = abs(x)
    if a >= 1e6:
        s = '%.2fM' % (x / 1e6)
    elif a >= 1e4:
        s = '%.0fk' % (x / 1e3)
    elif a >= 100:
        s = '%.0f' % x
    elif a >= 1:
        s = '%.2f' % x
    else:
        s = '%.3g' % x
    return s + (' ' + unit if unit else '')


def spread(med, lo, hi, unit=''):
    if lo is None or hi is None or lo == '' or hi == '':
        return fmt(med, unit)
    return '%s [%s-%s]%s' % (fmt(med), fmt(lo), fmt(hi),
                             ' ' + unit if unit else '')


def row(group, bench, ours, baseline, ratio, target=None, op='>=', met=None,
        note=''):
    """One line of the table.  target None: information only."""
    if target is not None and met is None and ratio is not None:
        met = ratio >= target if op == '>=' else ratio <= target
    return {'group': group, 'benchmark': bench, 'ours': ours,
            'baseline': baseline, 'ratio': ratio,
            'target': ('%s %g' % (op, target)) if target is not None
            else 'info', 'target_value': target, 'target_op': op,
            'status': 'info' if target is None and met is None else
            ('met' if met else 'MISSED'), 'note': note}


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def core(indir):
    d = load_json(os.path.join(indir, 'bench_core.json'))
    if not d:
        return None
    rows = d.get('rows', [])
    names = {r['id']: r['name'] for r in rows}
    out = []
    for r in rows:
        # Floors are baselines; a section left out (--only) has no figure.
        if r.get('result') in ('floor', 'skipped'):
            continue
        kind, t = r.get('target_kind'), r.get('target')
        fid = r.get('floor_id') or ''
        base = names.get(fid, fid).replace('floor: ', '')
        ours = spread(r['median'], r.get('min'), r.get('max'), r['unit'])
        bl = '%s: %s' % (base, fmt(r.get('floor', r.get('floor_median'))))
        if kind == 'ratio_min':
            out.append(row('core', r['name'], ours, bl, r['ratio'], t,
                           met=r['result'] == 'PASS'))
        elif kind == 'abs_min':
            out.append(row('core', r['name'], ours, bl, r['ratio'], None,
                           met=r['result'] == 'PASS',
                           note='target >= %s %s (absolute)' % (
                               fmt(t), r['unit'])))
            out[-1]['target'] = '>= %s %s' % (fmt(t), r['unit'])
        elif kind == 'limit_ratio_max':
            out.append(row('core', r['name'], ours,
                           'limit %s MiB' % fmt(r.get('floor', r.get('floor_median'))),
                           r['ratio'], t, '<=', met=r['result'] == 'PASS'))
        else:
            out.append(row('core', r['name'], ours, bl, r.get('ratio')))
    ref = load_json(os.path.join(indir, 'ref_core.json'))
    for r in (ref or {}).get('rows', []):
        if r.get('libpartd_median') is None or not r.get('median'):
            continue
        # Peak memory is "lower is better": keep the ratio as ours/ref.
        out.append(row('core vs partd', r['name'],
                       fmt(r['libpartd_median'], r['unit']),
                       'Python partd: ' + spread(r['median'], r.get('min'),
                                                 r.get('max'), r['unit']),
                       r['libpartd_median'] / r['median']))
    return {'rows': out, 'machine': {k: d.get(k) for k in
                                     ('date', 'kernel', 'nproc', 'cpu')}}


def codec(indir):
    path = os.path.join(indir, 'bench_codec.csv')
    try:
        with open(path, newline='') as f:
            recs = list(csv.DictReader(f))
    except OSError:
        return None
    out = []
    ref = {(r['codec'], r['op']): r for r in recs
           if r['impl'] == 'reference'}
    for r in recs:
        if r['impl'] != 'libpartd':
            continue
        if r['section'] == 'overhead':
            # bench_codec's ratio is layer time / hand time, target <= 1.05;
            # shown here as a speed like every other row: hand / layer,
            # target >= 1 / 1.05.
            ratio = 1.0 / float(r['ratio_to_bare'])
            out.append(row(
                'codec', '%s(Dict) %s' % (r['codec'], r['op']),
                '%s ms [%s-%s]' % (fmt(1e3 * float(r['median_s'])),
                                   fmt(1e3 * float(r['min_s'])),
                                   fmt(1e3 * float(r['max_s']))),
                'bare %s: %s ms' % (r['codec'],
                                    fmt(1e3 * float(r['bare_median_s']))),
                ratio, round(1 / 1.05, 3),
                note='speed ratio bare time / layer time (within 5%)'))
        elif r['section'] == 'file':
            p = ref.get((r['codec'], r['op']))
            if not p:
                continue
            name = r['codec'].replace('none (File)', 'File')
            out.append(row(
                'codec vs partd', '%s(File) shuffle payload %s' % (
                    name, r['op']) if name != 'File' else
                'File shuffle payload %s' % r['op'],
                fmt(float(r['mb_per_s']), 'MB/s'),
                'Python partd: %s' % fmt(float(p['mb_per_s']), 'MB/s'),
                float(p['median_s']) / float(r['median_s'])))
    return {'rows': out}


def zmq(indir):
    path = os.path.join(indir, 'bench_zmq.csv')
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    vals = {}
    for line in lines:
        # bench_zmq does not quote its names, which hold commas: the last
        # four fields are unit, median, min, max.
        parts = line.split(',')
        if len(parts) < 5:
            continue
        name = ','.join(parts[:-4]).strip()
        unit, med, lo, hi = parts[-4:]
        vals[name] = (unit, float(med), float(lo) if lo else None,
                      float(hi) if hi else None)
    out = []
    work = [('small appends', 0.70, None, 10),
            ('single-key gets', None, 50000, None),
            ('10 KB appends', None, 1000, None)]
    for w, tratio, tabs, tpy in work:
        ours = vals.get('%s, libpartd (ipc)' % w)
        raw = vals.get('%s, raw zmq loop (ipc)' % w)
        if ours and raw:
            r = row('zmq', 'Server/Client %s (ipc)' % w,
                    spread(ours[1], ours[2], ours[3], ours[0]),
                    'raw libzmq loop: %s' % fmt(raw[1], raw[0]),
                    ours[1] / raw[1], tratio)
            if tabs is not None:
                r['target'] = '>= %s %s' % (fmt(tabs), ours[0])
                r['status'] = 'met' if ours[1] >= tabs else 'MISSED'
            out.append(r)
        py = vals.get('%s Python partd (tcp)' % w)
        tcp = vals.get('%s, libpartd (tcp)' % w) or ours
        if py and tcp:
            out.append(row('zmq vs partd', 'Server/Client %s' % w,
                           fmt(tcp[1], tcp[0]) + (
                               ' (tcp)' if '%s, libpartd (tcp)' % w in vals
                               else ' (ipc)'),
                           'Python partd (tcp): %s' % fmt(py[1], py[0]),
                           tcp[1] / py[1], tpy))
    return {'rows': out}


def python(indir):
    d = load_json(os.path.join(indir, 'bench_py.json'))
    if not d:
        return None
    res = {(r['impl'], r['workload'], r['op']): r for r in d['rows']}
    out = []
    for (impl, wl, op), r in sorted(res.items()):
        if impl != 'cpartd' or op == 'shuffle':
            continue
        p = res.get(('partd', wl, op))
        if not p:
            continue
        t = (d.get('targets', {}).get(wl) or {}).get(op)
        # The reference has no Log: cpartd.Log is compared with partd.File.
        out.append(row('python', 'cpartd %s %s' % (
            'Log (vs partd.File)' if wl == 'Log' else wl, op),
                       spread(r['median'], r['min'], r['max'], r['unit']),
                       '%s: %s' % ('partd.File' if wl == 'Log' else 'partd',
                                   fmt(p['median'], p['unit'])),
                       r.get('paired_ratio', r['median'] / p['median']), t))
    # Shuffles compare best runs (min): the machine is shared.
    targets = d.get('shuffle_targets') or {'shuffle': d.get('shuffle_target',
                                                           1.3)}
    vs_tasks = d.get('shuffle_vs_tasks') or {}
    for wl in ('shuffle', 'shuffle-str', 'shuffle-cat', 'shuffle-Int64'):
        c = res.get(('cpartd', wl, 'shuffle'))
        p = res.get(('partd', wl, 'shuffle'))
        t = res.get(('tasks', wl, 'shuffle'))
        if not c:
            continue
        label = 'dask disk %s, %s rows' % (wl, fmt(d.get('shuffle_rows')))
        ours = spread(c['min'], c['min'], c['max'], 's')
        if p:
            out.append(row('dask', label + ': cpartd vs partd', ours,
                           'partd: %s' % fmt(p['min'], 's'),
                           p['min'] / c['min'], targets.get(wl),
                           note='speed ratio = partd s / cpartd s, best '
                           'runs'))
        if t:
            vs = vs_tasks.get(wl)
            out.append(row('dask', label + ': cpartd vs tasks shuffle', ours,
                           'tasks: %s' % fmt(t['min'], 's'),
                           t['min'] / c['min'],
                           None if vs is None else 1 / vs,
                           note='speed ratio = tasks s / cpartd s, best '
                           'runs'))
    return {'rows': out}


def sweep(indir):
    d = load_json(os.path.join(indir, 'sweep.json'))
    if not d:
        return None
    out = []
    band = d.get('band', 0.2)
    for r in d['rows']:
        name = {'records': '%s records' % fmt(r['records']),
                'partitions': '%d partitions' % r['partitions'],
                'workers': '%d workers' % r['workers']}[r['sweep']]
        out.append(row('sweep ' + r['sweep'], 'partd demo, %s' % name,
                       spread(r['rec_s'], r['rec_s_min'], r['rec_s_max'],
                              'rec/s'),
                       'sweep median: %s' % fmt(r['sweep_median_rec_s']),
                       r['rel'], None, met=r['flat'],
                       note='%s rec, %d parts, %d workers' % (
                           fmt(r['records']), r['partitions'],
                           r['workers'])))
        out[-1]['target'] = '%.1f..%.1f' % (1 - band, 1 + band)
    return {'rows': out, 'raw': d}


def logsweep(indir):
    """The Log's targets on the demo: --direct >= 0.70 of the sequential
    write floor from 16 to 65536 partitions, 65536 >= 0.8 of 64; served
    >= 0.60 of direct; the read phase >= 2x File's.  File: information."""
    d = load_json(os.path.join(indir, 'logsweep.json'))
    if not d:
        return None
    fw, fr = d['floor_write_mb_s'], d['floor_read_mb_s']
    pts = {(r['store'], r['mode'], r['partitions']): r for r in d['rows']}
    parts = sorted({r['partitions'] for r in d['rows']})
    out = []

    def mb(r, key='mb_s'):
        return spread(r[key], r[key + '_min'], r[key + '_max'], 'MB/s')

    for p in parts:
        for store in ('log', 'file'):
            for mode in ('direct', 'served'):
                r = pts.get((store, mode, p))
                if not r:
                    continue
                target = 0.70 if (store, mode) == ('log', 'direct') and \
                    p >= 16 else None
                out.append(row('demo %s' % store,
                               '%s %s, %d partitions' % (
                                   store.capitalize(), mode, p), mb(r),
                               'write floor: %s' % fmt(fw, 'MB/s'),
                               r['mb_s'] / fw, target))
        ld, ls = pts.get(('log', 'direct', p)), pts.get(('log', 'served', p))
        fd = pts.get(('file', 'direct', p))
        if ld and ls:
            out.append(row('demo log', 'served / direct, %d partitions' % p,
                           mb(ls), 'direct: %s' % fmt(ld['mb_s'], 'MB/s'),
                           ls['mb_s'] / ld['mb_s'], 0.60))
        if ld and fd:
            out.append(row('demo log', 'read phase, Log / File (direct), %d '
                           'partitions' % p, mb(ld, 'read_mb_s'),
                           'File: %s' % fmt(fd['read_mb_s'], 'MB/s'),
                           ld['read_mb_s'] / fd['read_mb_s'], 2.0,
                           note='read floor %s' % fmt(fr, 'MB/s')))
    a, b = pts.get(('log', 'direct', 65536)), pts.get(('log', 'direct', 64))
    if a and b:
        out.append(row('demo log', 'direct, 65536 / 64 partitions', mb(a),
                       '64 partitions: %s' % fmt(b['mb_s'], 'MB/s'),
                       a['mb_s'] / b['mb_s'], 0.80))
    return {'rows': out}


def print_table(rows):
    cols = ('benchmark', 'ours', 'baseline', 'ratio', 'target', 'status')
    w = {c: len(c) for c in cols}
    cells = []
    for r in rows:
        c = dict(r)
        c['benchmark'] = '%s: %s' % (r['group'], r['benchmark'])
        c['ratio'] = '-' if r['ratio'] is None else '%.2f' % r['ratio']
        cells.append(c)
        for k in cols:
            w[k] = min(max(w[k], len(str(c[k]))), 60)
    line = '  '.join('%-*s' % (w[k], k) for k in cols)
    print(line)
    print('-' * len(line))
    for c in cells:
        print('  '.join('%-*s' % (w[k], str(c[k])[:60]) for k in cols))


def markdown(rows, info, sources):
    lines = ['Measured %s on %s (%s CPUs), Linux %s, load average %.1f at '
             'report time.' % (info['date'], info['cpu'], info['nproc'],
                               info['kernel'], info['loadavg']), '',
             '| benchmark | ours (median [min-max]) | baseline | ratio | '
             'target | |', '|---|---|---|---:|---|---|']
    for r in rows:
        lines.append('| %s: %s | %s | %s | %s | %s | %s |' % (
            r['group'], r['benchmark'], r['ours'], r['baseline'],
            '-' if r['ratio'] is None else '%.2f' % r['ratio'], r['target'],
            r['status']))
    lines += ['', 'Sources: ' + ', '.join(
        '%s (%s)' % (k, v) for k, v in sorted(sources.items())), '']
    return '\n'.join(lines)


def plots(rows, sw, out):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print('report.py: matplotlib is missing (apt install '
              'python3-matplotlib): no plots')
        return []
    made = []
    bars = [r for r in rows if r['ratio'] and not
            r['group'].startswith('sweep')]
    if bars:
        h = max(4, 0.22 * len(bars) + 1.5)
        fig, ax = plt.subplots(figsize=(10, h))
        ys = list(range(len(bars)))[::-1]
        colours = {'met': '#4c9a2a', 'MISSED': '#c0392b', 'info': '#8c8c8c'}
        ax.barh(ys, [r['ratio'] for r in bars],
                color=[colours[r['status']] for r in bars])
        for y, r in zip(ys, bars):
            if r['target_value'] is not None and r['target'].startswith(
                    ('>=', '<=')) and r['target'].split()[1][0].isdigit() \
                    and len(r['target'].split()) == 2:
                ax.plot([r['target_value']] * 2, [y - 0.45, y + 0.45],
                        color='black', lw=1.5)
        ax.axvline(1.0, color='#444444', lw=0.8, ls=':')
        ax.set_xscale('log')
        ax.set_yticks(ys)
        ax.set_yticklabels([('%s: %s' % (r['group'], r['benchmark']))[:70] +
                            (' (lower is better)'
                             if r['target_op'] == '<=' else '')
                            for r in bars], fontsize=7)
        ax.set_xlabel('ratio to baseline (log scale; black tick = target; '
                      'green met, red missed, grey information)')
        ax.set_title('libpartd against its baselines')
        fig.tight_layout()
        p = os.path.join(out, 'ratios.png')
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    if sw:
        srows = sw['rows']
        band = sw.get('band', 0.2)
        names = [n for n in ('records', 'partitions', 'workers')
                 if any(r['sweep'] == n for r in srows)]
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names),
                                                         3.8), squeeze=False)
        for ax, n in zip(axes[0], names):
            pts = [r for r in srows if r['sweep'] == n]
            xs = [r[n] for r in pts]
            ys = [r['rec_s'] / 1e6 for r in pts]
            lo = [(r['rec_s'] - r['rec_s_min']) / 1e6 for r in pts]
            hi = [(r['rec_s_max'] - r['rec_s']) / 1e6 for r in pts]
            m = pts[0]['sweep_median_rec_s'] / 1e6
            ax.axhspan(m * (1 - band), m * (1 + band), color='#cfe3f5',
                       label='median +-%d%%' % round(100 * band))
            ax.axhline(m, color='#3b75af', lw=0.8, ls='--')
            ax.errorbar(xs, ys, yerr=[lo, hi], marker='o', color='#222222',
                        capsize=3, label='median [min-max]')
            ax.set_xscale('log', base=2 if n != 'records' else 10)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xticks(xs)
            ax.set_xticklabels([fmt(x) if n == 'records' else str(x)
                                for x in xs])
            ax.set_ylim(bottom=0)
            ax.set_xlabel(n)
            ax.set_ylabel('shuffle throughput (M records/s)')
            fixed = {'records': '%s partitions, %s workers' % (
                pts[0]['partitions'], pts[0]['workers']),
                'partitions': '%s records, %s workers' % (
                    fmt(pts[0]['records']), pts[0]['workers']),
                'workers': '%s records, %s partitions' % (
                    fmt(pts[0]['records']), pts[0]['partitions'])}[n]
            ax.set_title(fixed, fontsize=9)
            ax.legend(fontsize=7, loc='lower left')
        m = sw.get('machine', {})
        fig.suptitle('partd demo (server, 100 B records): %s, %s CPUs, %s'
                     % (m.get('cpu', '?'), m.get('nproc', '?'),
                        m.get('date', '?')), fontsize=9)
        fig.tight_layout()
        p = os.path.join(out, 'sweep.png')
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--in', dest='indir',
                    default=os.path.join(ROOT, 'build-bench'))
    ap.add_argument('--out', default=os.path.join(ROOT, 'docs', 'bench'))
    ap.add_argument('--no-plots', action='store_true')
    args = ap.parse_args()
    info = machine()
    rows, sources, sw = [], {}, None
    for name, fn, f in (('core', core, 'bench_core.json'),
                        ('codec', codec, 'bench_codec.csv'),
                        ('zmq', zmq, 'bench_zmq.csv'),
                        ('python', python, 'bench_py.json'),
                        ('sweep', sweep, 'sweep.json'),
                        ('logsweep', logsweep, 'logsweep.json')):
        res = fn(args.indir)
        if res is None:
            print('report.py: no %s results (%s): skipped' % (
                name, os.path.join(args.indir, f)))
            continue
        rows += res['rows']
        sources[f] = time.strftime('%Y-%m-%d %H:%M', time.localtime(
            os.path.getmtime(os.path.join(args.indir, f))))
        if name == 'sweep':
            sw = res['raw']
    if not rows:
        print('report.py: nothing to report in %s' % args.indir)
        return 2
    print('\nlibpartd benchmarks: %s, %s CPUs, Linux %s, %s' % (
        info['cpu'], info['nproc'], info['kernel'], info['date']))
    print_table(rows)
    miss = [r for r in rows if r['status'] == 'MISSED']
    print('%d rows: %d met, %d missed, %d information only' % (
        len(rows), sum(r['status'] == 'met' for r in rows), len(miss),
        sum(r['status'] == 'info' for r in rows)))
    os.makedirs(args.out, exist_ok=True)
    cols = ['group', 'benchmark', 'ours', 'baseline', 'ratio', 'target',
            'status', 'note']
    with open(os.path.join(args.out, 'results.csv'), 'w', newline='') as f:
        f.write('# %s; %s; %s CPUs; Linux %s\n' % (
            info['date'], info['cpu'], info['nproc'], info['kernel']))
        w = csv.DictWriter(f, cols, extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump({'machine': info, 'sources': sources, 'rows': rows,
                   'sweep': sw}, f, indent=1)
    with open(os.path.join(args.out, 'results.md'), 'w') as f:
        f.write(markdown(rows, info, sources))
    made = [] if args.no_plots else plots(rows, sw, args.out)
    print('wrote %s' % ', '.join(
        [os.path.join(args.out, n) for n in
         ('results.csv', 'results.json', 'results.md')] + made))
    return 0


if __name__ == '__main__':
    sys.exit(main())
