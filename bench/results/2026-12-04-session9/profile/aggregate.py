"""Shares of a whole-machine `perf record -a -F 999` by process, and of the suite's
samples by crate. Input: `perf script -F comm,pid,tid,ip,sym,dso` of the recording.
Usage: python3 aggregate.py perf.script

A process is the suite if any of its samples fall in the `smooch*` binary, the bench if
in `bench`; RabbitMQ's threads are Erlang schedulers and pollers. In a VM, perf samples
land where interrupts are re-enabled, so "kernel: scheduler, wake-ups" stands for the
cost of context switches and wake-ups rather than for those functions alone.
"""
import re,collections,sys
rows=[]
pids_dso=collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    m=re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+[0-9a-f]+\s+(.*)\((.*)\)\s*$',line)
    if not m: continue
    comm,pid,tid,sym,dso=m.group(1),m.group(2),m.group(3),m.group(4).strip(),m.group(5)
    rows.append((comm,pid,sym,dso))
    pids_dso[pid][dso.split('/')[-1]]+=1
owner={}
for pid,c in pids_dso.items():
    if any(k.startswith('smooch') for k in c): owner[pid]='smooch'
    elif c.get('bench'): owner[pid]='bench (load and sink)'
tot=len(rows)
proc=collections.Counter()
for comm,pid,sym,dso in rows:
    o=owner.get(pid)
    if not o:
        o={'postgres':'postgres','swapper':'idle'}.get(comm, 'rabbitmq' if ('schedul' in comm or 'poller' in comm or 'beam' in dso or 'dirty' in comm or 'erts' in comm) else 'other: '+comm.split('/')[0])
    proc[o]+=1
print('whole machine, samples:',tot)
for k,v in proc.most_common(8): print(f"{100*v/tot:5.1f}% {k}")
agg=collections.Counter(); n=0
for comm,pid,sym,dso in rows:
    if owner.get(pid)!='smooch': continue
    n+=1
    d=dso.split('/')[-1]
    if 'kernel' in d:
        k='kernel: scheduler, wake-ups' if any(x in sym for x in ['finish_task_switch','spin_unlock','irqentry','schedule','softirq','futex']) else 'kernel: network, syscalls'
    elif d.startswith('libc'): k='libc (memcpy, memmove)'
    else:
        s=sym.lstrip('<').replace('&','').replace('mut ','').replace('dyn ','')
        if s.startswith('_mi') or s.startswith('mi_') or 'rust_alloc' in s or 'rust_dealloc' in s or 'no_alloc_shim' in s or 'rust_realloc' in s: k='allocator'
        else:
            k=re.split(r'::|<| as |\[',s)[0] or s
    agg[k]+=1
print('--- smooch process, samples:',n)
for k,v in agg.most_common(22): print(f"{100*v/n:5.1f}% {k}")
