#!/usr/bin/python3
"""man/gen-man.py HEADER OUTDIR VERSION - write the C API's man pages.

    /usr/bin/python3 man/gen-man.py include/shoal.h man 0.1.0

Owns nothing at build time: the pages in man/ are committed and installed
as they are; run this after changing a kernel-doc block in include/shoal.h
and commit what changed (tests/check_man.sh checks every function has a
page and every page renders cleanly).

Data flow: the header -> each "/** ... */" block followed by a SHOAL_API
prototype, a struct, an enum or a typedef -> (summary, @args, body,
Return:) -> one page per function group (the table at the bottom: its
NAME list, the intro, NOTES on deaths and threads, SEE ALSO) -> a
".so man3/<page>.3" link page for every other name the page covers.

"""
import re, sys, os
src = open(sys.argv[1]).read()
outdir = sys.argv[2]
VERSION = sys.argv[3] if len(sys.argv) > 3 else ""

# ---- parse -----------------------------------------------------------------
funcs = {}    # name -> dict(proto, summary, args, body, ret)
structs = {}  # name -> (doc, definition text)
blocks = []   # (pos, text) of plain /* */ comments
tok = re.compile(r'/\*\*((?:(?!\*/).)*)\*/\s*\n(SHOAL_API\s+[^;]*;|struct\s+\w+\s*\{.*?\n\};|enum\s+\w+\s*\{.*?\n\};|typedef[^;]*;)', re.S)
def clean(doc):
    lines = []
    for l in doc.split('\n'):
        l = re.sub(r'^\s*\* ?', '', l, count=1) if l.strip().startswith('*') else l.strip()
        lines.append(l.rstrip())
    while lines and not lines[0].strip(): lines.pop(0)
    while lines and not lines[-1].strip(): lines.pop()
    return lines
def parse_doc(lines):
    first = lines[0]
    m = re.match(r'(?:struct |typedef |enum )?(\w+)(?:\(\))?\s*-\s*(.*)', first)
    summary = m.group(2) if m else first
    i = 1
    # summary may continue on following lines until blank or @
    while i < len(lines) and lines[i].strip() and not lines[i].startswith('@'):
        summary += ' ' + lines[i].strip(); i += 1
    args = []
    while i < len(lines) and (lines[i].startswith('@') or (args and lines[i].startswith(' '))):
        if lines[i].startswith('@'):
            a, _, d = lines[i][1:].partition(':')
            args.append([a.strip(), d.strip()])
        else:
            args[-1][1] += ' ' + lines[i].strip()
        i += 1
    rest = lines[i:]
    body, ret, inret = [], [], False
    for l in rest:
        if l.startswith('Return:'):
            inret = True; ret.append(l[len('Return:'):].strip()); continue
        (ret if inret else body).append(l)
    return summary, args, body, ret
for m in tok.finditer(src):
    lines = clean(m.group(1)); decl = m.group(2)
    if decl.startswith('SHOAL_API'):
        proto = re.sub(r'^SHOAL_API\s+', '', decl)
        name = re.search(r'(\w+)\s*\(', proto).group(1)
        s, a, b, r = parse_doc(lines)
        funcs[name] = dict(proto=proto, summary=s, args=a, body=b, ret=r)
    else:
        name = re.match(r'(?:struct|enum|typedef)\s+(?:\w+\s*\(\*)?(\w+)', decl).group(1)
        structs[name] = (lines, decl)
# functions without a kernel-doc block of their own
for m in re.finditer(r'^SHOAL_API\s+([^;]*;)', src, re.M):
    proto = m.group(1); name = re.search(r'(\w+)\s*\(', proto).group(1)
    if name not in funcs:
        funcs[name] = dict(proto=proto, summary='', args=[], body=[], ret=[])
sections = {}
for m in re.finditer(r'/\*(?!\*)\n(.*?)\*/', src, re.S):
    sections[m.start()] = clean(m.group(1))

def section_after(marker):
    i = src.index(marker)
    for pos in sorted(sections):
        if pos > i:
            return sections[pos]
    return []

# ---- troff ----------------------------------------------------------------------
def esc(t):
    t = t.replace('\\', '\\e')
    return t
def line(t):
    t = esc(t)
    t = re.sub(r'@(\w+)', r'\\fI\1\\fP', t)
    if t.startswith('.') or t.startswith("'"):
        t = '\\&' + t
    return t
def para(lines):
    """kernel-doc body lines -> troff: a blank line starts a paragraph, "- "
    a bullet (its indented lines continue it), other indented runs are
    no-fill blocks."""
    out, pre, bullet = [], False, False
    for l in lines:
        if not l.strip():
            if pre: out.append('.fi'); pre = False
            bullet = False
            out.append('.PP'); continue
        st = l.strip()
        if st.startswith('- ') and len(l) - len(l.lstrip()) <= 1:
            if pre: out.append('.fi'); pre = False
            out += ['.IP \\(bu 2', line(st[2:])]; bullet = True; continue
        if l.startswith('  ') and bullet:
            out.append(line(st)); continue
        if l.startswith('  ') and not st.startswith('@'):
            if not pre: out.append('.nf'); pre = True
            out.append(line('    ' + st)); continue
        if pre: out.append('.fi'); pre = False
        if bullet:
            out.append('.PP'); bullet = False
        out.append(line(st))
    if pre: out.append('.fi')
    while out and out[0] == '.PP': out.pop(0)
    return out
def code(text):
    out = ['.nf']
    for l in text.split('\n'):
        out.append(line(l.replace('\t', '        ')))
    out.append('.fi')
    return out

DEFS = {'shoal_errors.3': ['SHOAL_ERRBASE', 'SHOAL_ERRDETAIL_MAX'], 'shoal_segment.3': ['SHOAL_NAME_MAX', 'SHOAL_PREFIX', 'SHOAL_RDONLY', 'SHOAL_PREFAULT'],
        'shoal_queue.3': ['SHOAL_QUEUE_CAPACITY_MAX', 'SHOAL_QUEUE_MSG_MAX', 'SHOAL_QUEUE_PARTICIPANTS'], 'shoal_array.3': ['SHOAL_ARRAY_MAXDIM', 'SHOAL_ARRAY_HOLDERS_MAX', 'SHOAL_HANDLE_MAX', 'SHOAL_HANDLE_PREFIX', 'SHOAL_ARRAY_NOREF'],
        'shoal_memstat.3': ['SHOAL_MEMSTAT_SMAPS'], 'shoal_pool_worker.3': ['SHOAL_POOL_EXIT', 'SHOAL_POOL_TASK', 'SHOAL_POOL_TRIM']}
def page(fname, title, names, summary, intro, fnames, types=(), notes=(), see=(), extra_desc=()):
    o = ['.\\" Written from the kernel-doc in include/shoal.h: keep the two in step.',

         f'.TH {title} 3 "" "shoal {VERSION}" "shoal Manual"', '.SH NAME',
         ', '.join(names) + ' \\- ' + summary, '.SH SYNOPSIS', '.nf', '.B #include <shoal.h>', '.fi']
    if fname in DEFS:
        o += ['.PP'] + code('\n'.join(re.search(r'^#define ' + d + r'\b.*$', src, re.M).group(0) for d in DEFS[fname]))
    for t in types:
        lines, decl = structs[t]
        o += ['.PP'] + code(decl)
    for f in fnames:
        o += ['.PP'] + code(funcs[f]['proto'])
    o.append('.SH DESCRIPTION')
    o += para(list(intro))
    for e in extra_desc:
        o += ['.PP'] + e
    for t in types:
        lines, decl = structs[t]
        s, args, body, ret = parse_doc(lines)
        o += ['.SS ' + t, line(s)]
        for a, d in args:
            o += ['.TP', '.I ' + a, line(d)]
        if body:
            o += ['.PP'] + para(list(body))
    for f in fnames:
        d = funcs[f]
        o += ['.SS ' + f + '()']
        if d['summary']:
            sm = d['summary']
            o.append(line(sm if sm.startswith('shoal_') else sm[0].upper() + sm[1:]))
        for a, t in d['args']:
            o += ['.TP', '.I ' + a, line(t)]
        if d['body']:
            o += ['.PP'] + para(list(d['body']))
    o.append('.SH RETURN VALUE')
    for f in fnames:
        d = funcs[f]
        o += ['.TP', '.BR ' + f + ' ()']
        if d['ret']:
            o += para(list(d['ret']))
        else:
            o.append(line(returns_of(d['proto'])))
    if notes:
        o.append('.SH NOTES')
        first = True
        for n in notes:
            if not first: o.append('.PP')
            first = False
            o += para(n) if isinstance(n, list) else [line(n)]
    o.append('.SH SEE ALSO')
    o.append(',\n'.join('.BR ' + s.replace('(', ' (') for s in see))
    open(os.path.join(outdir, fname), 'w').write('\n'.join(o) + '\n')
    for n in names:
        if n + '.3' != fname:
            open(os.path.join(outdir, n + '.3'), 'w').write(f'.so man3/{fname}\n')

def returns_of(proto):
    r = proto.split('(')[0]
    if r.startswith('void') and '*' not in r: return 'Nothing.'
    return 'As described above; it cannot fail.'

G = {}
def grp(prefix_list): return [f for f in funcs if f in prefix_list]
allf = list(funcs)
def F(*names):
    for n in names: assert n in funcs, n
    return list(names)
conv = clean(src[src.index('/*')+2:src.index('*/')])
conv = ['Conventions, for every function of libshoal:'] + conv[[i for i, l in enumerate(conv) if l.lstrip().startswith('- ')][0]:]
DEATH = "Any process may be killed at any instruction inside these calls; what that leaves, and who takes it back, is described below and in the design pages installed with the sources (docs/)."
page('shoal_errors.3', 'SHOAL_ERRORS', ['shoal_errors', 'shoal_strerror', 'shoal_errdetail', 'shoal_version'],
     'error codes, their explanation, and the library version',
     conv, F('shoal_strerror', 'shoal_errdetail', 'shoal_version'),
     extra_desc=[code("enum shoal_error {\n\tSHOAL_EWORKERLOST = SHOAL_ERRBASE + 1,  /* a pool worker died running the task */\n\tSHOAL_EPOISONED = SHOAL_ERRBASE + 2,    /* reserved; no call returns it */\n};"),
                 para(["Codes at or above SHOAL_ERRBASE (4096) are shoal's own. Shoal gives these errno values a meaning of its own:", "", "-EBADMSG: a corrupt or foreign object (bad magic, sizes that disagree with the file, offsets out of range, not a regular file).", "", "-EPROTO: a layout version this library does not know.", "", "-EPROTOTYPE: a shoal object of another kind (a queue opened as a segment).", "", "-EACCES: the object belongs to another user or is group or world writable."])],
     notes=["The library never prints, never calls exit(), and installs no signal handler.",
            "The detail behind shoal_errdetail() is thread-local: it needs no lock and no shared state, so nothing about it can block or be torn by a process that dies."],
     see=['shoal_segment(3)', 'shoal_queue(3)', 'shoal_array(3)', 'shoal_pool(3)', 'errno(3)', 'strerror(3)'])
page('shoal_segment.3', 'SHOAL_SEGMENT', ['shoal_segment', 'shoal_segment_create', 'shoal_segment_open', 'shoal_segment_close', 'shoal_segment_data', 'shoal_segment_size', 'shoal_segment_name', 'shoal_segment_is_readonly', 'shoal_unlink', 'shoal_dir'],
     'named shared-memory segments in /dev/shm or SHOAL_DIR',
     ["A segment is a named shared-memory object, <dir>/shoal.<name>, with a common header that every shoal object has, followed by page-aligned data. <dir> is /dev/shm unless the environment variable SHOAL_DIR names another directory on tmpfs or hugetlbfs (shoal_dir()). Opening one treats it as untrusted input: its header, size, owner and mode are checked before use."],
     F('shoal_segment_create', 'shoal_segment_open', 'shoal_segment_close', 'shoal_segment_data', 'shoal_segment_size', 'shoal_segment_name', 'shoal_segment_is_readonly', 'shoal_unlink', 'shoal_dir'),
     types=['shoal_opts'],
     notes=["A creator killed before the atomic rename that publishes the object leaves only a temporary file, shoal..tmp.<pid>.<random>, which shoal_reap(3) removes once that pid no longer runs; after the rename the object is complete.",
            "Another process of the same user that truncates the file while it is mapped makes the next access past the end raise SIGBUS: shoal protects against mistakes and foreign files, not against a hostile process of the same uid."],
     see=['shoal_errors(3)', 'shoal_reap(3)', 'shm_open(3)', 'shoal(1)'])
qintro = section_after('/* ---- queue (lib/queue.c)')
page('shoal_queue.3', 'SHOAL_QUEUE', ['shoal_queue', 'shoal_queue_create', 'shoal_queue_open', 'shoal_queue_detach', 'shoal_queue_unlink', 'shoal_queue_push', 'shoal_queue_pop', 'shoal_queue_push_many', 'shoal_queue_pop_many', 'shoal_queue_close', 'shoal_queue_is_closed', 'shoal_queue_stats', 'shoal_queue_observe', 'shoal_queue_name'],
     'a crash-safe multi-producer multi-consumer queue in shared memory',
     qintro,
     F('shoal_queue_create', 'shoal_queue_open', 'shoal_queue_detach', 'shoal_queue_unlink', 'shoal_queue_push', 'shoal_queue_pop', 'shoal_queue_push_many', 'shoal_queue_pop_many', 'shoal_queue_close', 'shoal_queue_is_closed', 'shoal_queue_stats', 'shoal_queue_observe', 'shoal_queue_name'),
     types=['shoal_queue_stats', 'shoal_queue_participant', 'shoal_queue_view'],
     notes=["A plain pop hands a message over at the store that releases its slot, inside the call: a consumer killed before that store gives the message back (it is delivered again, once, counted in redelivered); one killed after it has consumed it. Work that must survive its consumer is taken with shoal_queue_claim(3).",
            "A producer killed between claiming a slot and publishing it leaves a tombstone that consumers skip (counted in dropped): a message is delivered whole or not at all, never torn, never twice. A survivor repairs what a dead process left within about one 50 ms sleep slice; no daemon is needed.",
            "Threads: a handle may be used by many threads at once, except shoal_queue_detach(), which must be the last call on it."],
     see=['shoal_queue_claim(3)', 'shoal_array(3)', 'shoal_reap(3)', 'shoal_errors(3)'])
page('shoal_queue_claim.3', 'SHOAL_QUEUE_CLAIM', ['shoal_queue_claim', 'shoal_queue_ack', 'shoal_queue_nack'],
     'acknowledged delivery from a shoal queue',
     ["A claim is a pop that keeps the message recoverable until it is acknowledged: a claimer that dies, detaches or nacks before shoal_queue_ack() has the message delivered again, once per death, with its redelivery count. The message keeps its ring slot until then.", "", "Timeouts, as for every queue call: 0 = try once, < 0 = wait forever, > 0 = wait at most that many nanoseconds."],
     F('shoal_queue_claim', 'shoal_queue_ack', 'shoal_queue_nack'), types=['shoal_queue_ticket'],
     notes=["Claims are taken in FIFO order and acked in any order, but the ring cannot skip a slot: the producer one lap after a claimed message waits until that claim is settled. Keep claims short, or the capacity well above the number a consumer keeps open.",
            "A consumer that holds claims must settle them before it waits for the end of a closed queue, or it waits for itself."],
     see=['shoal_queue(3)', 'shoal_errors(3)'])
portintro = section_after('/* ---- queue ports (lib/queue_port.c)')
page('shoal_queue_port.3', 'SHOAL_QUEUE_PORT', ['shoal_queue_port', 'shoal_queue_port_open', 'shoal_queue_port_close', 'shoal_queue_port_pop', 'shoal_queue_port_push', 'shoal_queue_port_send', 'shoal_queue_port_length_at', 'shoal_queue_port_put', 'shoal_queue_port_pop_many', 'shoal_queue_port_send_many', 'shoal_queue_port_gather', 'shoal_queue_port_put_many', 'shoal_queue_port_collect', 'shoal_queue_port_take_many', 'shoal_queue_port_unbind', 'shoal_queue_port_deliver', 'shoal_queue_port_take', 'shoal_queue_port_error'],
     'one-argument queue calls for foreign-function callers',
     portintro,
     F('shoal_queue_port_open', 'shoal_queue_port_close', 'shoal_queue_port_pop', 'shoal_queue_port_push', 'shoal_queue_port_send', 'shoal_queue_port_length_at', 'shoal_queue_port_put', 'shoal_queue_port_pop_many', 'shoal_queue_port_send_many', 'shoal_queue_port_gather', 'shoal_queue_port_put_many', 'shoal_queue_port_collect', 'shoal_queue_port_take_many', 'shoal_queue_port_unbind', 'shoal_queue_port_deliver', 'shoal_queue_port_take', 'shoal_queue_port_error'),
     notes=["A port's calls are the queue's calls with bound arguments: a process killed inside one leaves what it would leave inside shoal_queue_push(3) or shoal_queue_pop(3), and the port itself, process memory, goes with the process.",
            "Port numbers are plain ints so that an interpreter passes them without building a pointer object; a number carries a generation, so one used after its port was closed is refused with -EBADF rather than naming another port."],
     see=['shoal_queue(3)', 'shoal_errors(3)'])
aintro = section_after('/* ---- array (lib/array.c)') if '/* ---- array (lib/array.c)' in src else []
qaintro = section_after('/* ---- arrays in queues')
page('shoal_array.3', 'SHOAL_ARRAY', ['shoal_array', 'shoal_dtype_itemsize', 'shoal_dtype_name'] + [f for f in funcs if f.startswith('shoal_array_')] + ['shoal_queue_hold_array', 'shoal_queue_unhold_array', 'shoal_queue_attach_array', 'shoal_queue_push_array', 'shoal_queue_pop_array'],
     'refcounted n-d arrays in shared memory, their handles, and arrays in queues',
     aintro + [''] + qaintro,
     F('shoal_dtype_itemsize', 'shoal_dtype_name', *[f for f in funcs if f.startswith('shoal_array_')], 'shoal_queue_hold_array', 'shoal_queue_unhold_array', 'shoal_queue_attach_array', 'shoal_queue_push_array', 'shoal_queue_pop_array'),
     types=['shoal_dtype', 'shoal_array_desc', 'shoal_array_holder'],
     notes=["References are counted per holder on the array's ledger, and every change is committed by one store under the array's lock, so a holder killed at any instruction leaves the ledger consistent. Its references stay on its line until a release's sweep or shoal_reap(3) finds it dead; the name is unlinked once, by one process, only after nobody holds a reference.",
            "A forked child inherits mappings, not references: there release() is -EINVAL, close() only unmaps, and retain() takes a reference of the child's own.",
            "Every holder must be in the reaper's pid namespace (a holder in another one looks dead), and a process that execs keeps its references until it exits."],
     see=['shoal_queue(3)', 'shoal_reap(3)', 'shoal_errors(3)', 'shoal(1)'])
page('shoal_reap.3', 'SHOAL_REAP', ['shoal_reap'], 'take back what dead processes held',
     [], F('shoal_reap'),
     notes=["A reap killed midway leaves every object consistent: each drop is its own commit, and the next reap goes on from there.",
            "There is no daemon. shoal_queue_unlink(3) reaps; shoal gc is this call."],
     see=['shoal_array(3)', 'shoal_queue(3)', 'shoal_pool(3)', 'shoal_leaks(3)', 'shoal(1)'])
page('shoal_leaks.3', 'SHOAL_LEAKS', ['shoal_leaks'], 'list the objects nobody will free',
     ["What shoal leaks prints and shoal.leaks() returns in Python: arrays whose holders are all dead, arrays held only by queues nobody reads, references live processes have held for long, pool boards of dead supervisors, temporary files of dead creators; with who created each, when, and what reclaiming it would free."],
     F('shoal_leaks'), types=['shoal_leak_reason', 'shoal_leak'],
     notes=["The ledger of an array keeps no time per reference: a reference is judged old when both the array and the process holding it are at least min_age_ns old, so an array a long-running process keeps on purpose is listed too, under its own reason."],
     see=['shoal_reap(3)', 'shoal_queue_unlink(3)', 'shoal(1)'])
page('shoal_memstat.3', 'SHOAL_MEMSTAT', ['shoal_memstat'], 'what a process costs in memory',
     [], F('shoal_memstat'), types=['shoal_memstat'],
     notes=["Private memory is RssAnon + VmSwap: what the process alone holds, and what returns to the system when it ends. Not RSS (it counts the shared arrays a process reads) and not ru_maxrss (a high-water mark inherited across fork).",
            "Reading /proc/PID/status costs the same whatever the process maps; SHOAL_MEMSTAT_SMAPS walks every page table of the process."],
     see=['shoal_pool(3)', 'proc(5)'])
page('shoal_proc.3', 'SHOAL_PROC', ['shoal_proc', 'shoal_proc_self', 'shoal_proc_get', 'shoal_proc_is_alive'], 'process identity that survives pid reuse',
     ["A process is a pid plus its start time in clock ticks since boot (field 22 of /proc/PID/stat): a pid is only reused after its owner is gone and time has moved on, so the pair never names two processes."],
     F('shoal_proc_self', 'shoal_proc_get', 'shoal_proc_is_alive'), types=['shoal_proc'],
     see=['shoal_reap(3)', 'proc(5)'])
pintro = ["A pool runs tasks (bytes in, bytes out) on worker processes and replaces a worker when its private memory, its task count or its age passes a limit, without losing a task. Workers are forked by a single-threaded fork server started with the pool, or started by the host's spawn hook; the pool's exit watcher thread polls their pidfds and joins them; the supervisor thread hands tasks out through the pool's task board in /dev/shm, prefetch tasks ahead per worker."]
pf = [f for f in funcs if f.startswith('shoal_pool_') and not f.startswith('shoal_pool_worker_')]
page('shoal_pool.3', 'SHOAL_POOL', ['shoal_pool'] + pf, 'a worker pool that recycles workers by private memory',
     pintro, F(*pf), types=['shoal_pool_fn', 'shoal_pool_spawn_fn', 'shoal_pool_join_fn', 'shoal_pool_reason', 'shoal_pool_config', 'shoal_pool_result', 'shoal_pool_task_state', 'shoal_pool_stats', 'shoal_pool_info', 'shoal_pool_seat_state', 'shoal_pool_worker_view', 'shoal_pool_view'],
     notes=["No task is lost: a task is in exactly one place at a time (the backlog, one cell of one seat, or the done list). A worker killed at any instruction has its unstarted tasks put back and the task it died in run again, or after max_attempts failed with SHOAL_EWORKERLOST naming the signal and the memory seen.",
            "A supervisor that is killed takes its workers with it: the fork server sees EOF and kills them, and any other worker notices within about a second. Its task board and spill segments stay until shoal_reap(3) (shoal gc) finds the supervisor dead; shoal_pool_create() does the same for boards of the default name.",
            "No worker is ever forked from a process with other threads: the fork server is forked from the calling thread before the pool's threads exist. The library installs no SIGCHLD handler."],
     see=['shoal_pool_worker(3)', 'shoal_memstat(3)', 'shoal_reap(3)', 'shoal_errors(3)'])
wf = [f for f in funcs if f.startswith('shoal_pool_worker_')]
page('shoal_pool_worker.3', 'SHOAL_POOL_WORKER', ['shoal_pool_worker'] + wf, 'the worker side of a shoal pool',
     ["A worker started by a spawn hook opens the pool's task board with the (board, seat, gen) it was given, then takes tasks and hands back results until the pool retires it or its supervisor is gone. A C worker forked by the pool's own fork server runs shoal_pool_worker_run() for you."],
     F(*wf), types=['shoal_pool_task'],
     notes=["A worker runs the cells of its seat in order; killed at any instruction, it leaves each cell in a state the supervisor handles. It checks its supervisor's identity between tasks (at most every 0.5 s) and when a wait times out, and leaves if the supervisor is gone."],
     see=['shoal_pool(3)', 'shoal_errors(3)'])
