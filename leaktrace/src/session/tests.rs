//! The session's pairing, sweeping and sampling against the fake kernel side
//! (`fake.rs`). The integration suite covers each behaviour on the real
//! kernel; these pin the logic down exactly and fast.

use leaktrace_common::counters;
use leaktrace_common::process::USER_GEN_BIT;
use leaktrace_common::tcp::TCP_CLOSE_WAIT;

use super::fake::{FakeKernel, FIRST_PID};
use super::{Session, SessionOptions};
use crate::kernel::Capacities;
use crate::proc_id::ProcId;
use crate::resource::Kind;
use crate::track::aggregate::Group;
use crate::unwind::Unwind;

const OPTIONS: SessionOptions =
    SessionOptions { unwind: Unwind::FramePointers, examples: 5, max_mappings: 1024, max_series: 64 };

fn proc(n: u32, gen: u64) -> ProcId {
    ProcId { tgid: FIRST_PID + n, gen }
}

fn count(groups: &[Group], owner: u32) -> u64 {
    groups.iter().filter(|g| g.pids.contains(&owner)).map(|g| g.count).sum()
}

#[test]
fn an_exited_process_is_taken_at_the_next_sweep_and_a_live_one_only_sampled() {
    let (a, b) = (proc(1, 1), proc(2, 1));
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.spawn(b);
    for (fd, at) in [(3, 10), (4, 20), (5, 30)] {
        fake.acquire(a, fd, at, 1);
    }
    fake.acquire(b, 3, 15, 2);
    fake.exit(a, 100);
    let mut session = Session::new(fake, &OPTIONS);

    let sample = session.refresh().expect("refresh");
    let live = sample.into_groups();
    assert_eq!((count(&live, a.tgid), count(&live, b.tgid)), (0, 1), "the sample is of live processes only");
    let held: Vec<u32> = session.kernel().held().iter().map(|k| k.tgid).collect();
    assert_eq!(held, vec![b.tgid], "the exited process's entries left the kernel's map");

    let outcome = session.finish().expect("finish");
    assert_eq!((count(&outcome.groups, a.tgid), count(&outcome.groups, b.tgid)), (3, 1));
    assert_eq!((outcome.acquired, outcome.released), (4, 0));
    let exited = outcome.groups.iter().find(|g| g.pids.contains(&a.tgid)).expect("a's stack");
    // Held until the exit, not until the report.
    assert_eq!(exited.oldest_age_ns, 90);
    assert_eq!(exited.examples.len(), 3);
}

#[test]
fn close_range_releases_what_it_spans_of_what_was_acquired_before_it() {
    let a = proc(1, 1);
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(a);
    for (fd, at) in [(3, 10), (4, 20), (5, 30), (9, 40)] {
        fake.acquire(a, fd, at, 1);
    }
    fake.close_range(a, 50, 4, 9, 0);
    // fd 6 is given out again after the close_range: it stays.
    fake.acquire(a, 6, 60, 1);
    let mut session = Session::new(fake, &OPTIONS);
    session.tick().expect("tick");
    let held: Vec<u32> = session.kernel().held().iter().map(|k| k.fd).collect();
    assert_eq!(held, vec![3, 6]);
    let (acquired, released, _) = session.totals().expect("totals");
    assert_eq!((acquired, released), (5, 3), "releases applied here count as releases");
}

#[test]
fn close_range_cloexec_marks_and_exec_releases_the_marked_and_o_cloexec_fds() {
    let a = proc(1, 1);
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.acquire(a, 3, 10, 1);
    fake.acquire_cloexec(a, 4, 20, 1);
    fake.acquire(a, 5, 30, 1);
    fake.acquire(a, 6, 31, 1);
    // CLOSE_RANGE_CLOEXEC on 5..=5: marked, released only by the exec.
    fake.close_range(a, 40, 5, 5, 1 << 2);
    let mut session = Session::new(fake, &OPTIONS);
    session.tick().expect("tick");
    assert_eq!(session.kernel().held().len(), 4, "marking releases nothing");
    session.kernel.exec(a, 50);
    session.tick().expect("tick");
    let held: Vec<u32> = session.kernel().held().iter().map(|k| k.fd).collect();
    assert_eq!(held, vec![3, 6]);
}

#[test]
fn a_pid_given_out_again_after_an_exit_is_another_process() {
    let (old, new) = (proc(1, 1), proc(1, 2));
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(old);
    fake.acquire(old, 3, 10, 1);
    fake.exit(old, 50);
    fake.spawn(new);
    fake.acquire(new, 3, 60, 2);
    let mut session = Session::new(fake, &OPTIONS).per_process();
    let live = session.refresh().expect("refresh").into_groups();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].owner, Some(new));
    let live = session.refresh().expect("refresh");
    let outcome = session.interval_outcome(live).expect("outcome");
    let mut owners: Vec<(Option<ProcId>, bool, u64)> =
        outcome.groups.iter().map(|g| (g.owner, g.exited, g.count)).collect();
    owners.sort();
    assert_eq!(owners, vec![(Some(old), true, 1), (Some(new), false, 1)]);
    // Reported once: the next interval has only the live one.
    let live = session.refresh().expect("refresh");
    let next = session.interval_outcome(live).expect("outcome");
    assert_eq!(next.groups.iter().map(|g| g.owner).collect::<Vec<_>>(), vec![Some(new)]);
}

#[test]
fn what_a_process_the_filter_leaves_out_held_is_dropped_not_counted() {
    let (parent, child) = (proc(1, 1), proc(2, 1));
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(parent);
    fake.acquire(parent, 3, 10, 1);
    fake.fork(child, parent.tgid, 20);
    // Acquired before the session judged the fork.
    fake.acquire(child, 3, 25, 2);
    let left_out = child.tgid;
    let mut session = Session::new(fake, &OPTIONS).with_filter(Box::new(move |pid| pid != left_out));
    session.tick().expect("tick");
    assert!(!session.is_traced(child.tgid), "left out in the kernel side too");
    // Not in a sample, even before a sweep dropped it.
    let outcome = session.finish().expect("finish");
    assert_eq!((count(&outcome.groups, parent.tgid), count(&outcome.groups, child.tgid)), (1, 0));
    session.refresh().expect("refresh");
    let held: Vec<u32> = session.kernel().held().iter().map(|k| k.tgid).collect();
    assert_eq!(held, vec![parent.tgid], "the sweep dropped it from the kernel's map");
}

#[test]
fn the_sockets_of_exited_processes_go_with_them() {
    let (a, gone) = (proc(1, 1), proc(3, 1));
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.connect(a, 5, 10, 1, 0xa000, TCP_CLOSE_WAIT);
    // A socket whose fd entry was not stored (or was released in a way the
    // programs do not see), of a process that is gone.
    fake.spawn(gone);
    fake.connect(gone, 7, 12, 1, 0xb000, TCP_CLOSE_WAIT);
    fake.forget_entry(gone, 7);
    fake.exit(gone, 14);
    fake.exit(a, 100);
    let mut session = Session::new(fake, &OPTIONS);
    session.tick().expect("tick");
    assert!(session.kernel().socks().is_empty(), "{:?}", session.kernel().socks());
    let outcome = session.finish().expect("finish");
    let tcp = outcome.groups.iter().find(|g| g.pids.contains(&a.tgid)).expect("a's connection");
    assert_eq!(tcp.kind, Kind::Tcp);
    assert_eq!(tcp.states.get("CLOSE_WAIT"), Some(&1));
}

#[test]
fn stacks_no_entry_uses_are_freed_after_two_sweeps_past_half_capacity() {
    let a = proc(1, 1);
    let fake = FakeKernel::new(true, Capacities { entries: 64, stacks: 4, unwind_rows: 1024, tcp: false });
    fake.spawn(a);
    fake.acquire(a, 3, 10, 1);
    fake.acquire(a, 4, 11, 2);
    fake.acquire(a, 5, 12, 3);
    fake.close(a, 4);
    fake.close(a, 5);
    let mut session = Session::new(fake, &OPTIONS);
    session.refresh().expect("refresh");
    assert_eq!(session.kernel().stacks(), vec![1, 2, 3], "one sweep could race with a new acquisition");
    session.refresh().expect("refresh");
    assert_eq!(session.kernel().stacks(), vec![1]);
    assert_eq!(session.kernel_maps.stacks.capacity, 4);

    // Below half capacity nothing is freed, however long it is unused.
    let fake = FakeKernel::new(true, Capacities { entries: 64, stacks: 8, unwind_rows: 1024, tcp: false });
    fake.spawn(a);
    fake.acquire(a, 3, 10, 1);
    fake.acquire(a, 4, 11, 2);
    fake.close(a, 4);
    let mut session = Session::new(fake, &OPTIONS);
    for _ in 0..3 {
        session.refresh().expect("refresh");
    }
    assert_eq!(session.kernel().stacks(), vec![1, 2]);
}

#[test]
fn each_refresh_is_a_sample_and_the_end_is_the_last() {
    let a = proc(1, 1);
    let fake = FakeKernel::tracing_all();
    fake.spawn(a);
    let mut session = Session::new(fake, &OPTIONS);
    for fd in 3..6 {
        session.kernel.acquire(a, fd, u64::from(fd), 1);
        session.refresh().expect("refresh");
    }
    let outcome = session.finish().expect("finish");
    assert_eq!(outcome.groups.len(), 1);
    let samples = session.history().samples(&outcome.groups[0].key()).expect("a series");
    let counts: Vec<u64> = samples.points.iter().map(|p| p.count).collect();
    assert_eq!(counts, vec![1, 2, 3, 3]);

    // Under run's tracer the command's exit was the last sample: the end
    // adds none.
    let fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.acquire(a, 3, 3, 1);
    let mut session = Session::new(fake, &OPTIONS).held_by_tracer();
    session.refresh().expect("refresh");
    let outcome = session.finish().expect("finish");
    let samples = session.history().samples(&outcome.groups[0].key()).expect("a series");
    assert_eq!(samples.points.len(), 1);
}

#[test]
fn what_cannot_be_decoded_is_counted_as_lost() {
    let mut fake = FakeKernel::tracing_all();
    fake.garbage();
    fake.garbage();
    fake.count(counters::EVENTS_LOST, 3);
    let mut session = Session::new(fake, &OPTIONS);
    session.tick().expect("tick");
    let (_, _, losses) = session.totals().expect("totals");
    assert_eq!((losses.undecodable_events, losses.events_lost), (2, 3));
}

#[test]
fn gone_processes_lose_their_history_and_targets_keep_their_names() {
    let (a, b) = (proc(1, 1), proc(2, 1));
    let fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.spawn(b);
    fake.acquire(a, 3, 10, 1);
    fake.acquire(b, 3, 10, 2);
    let mut session = Session::new(fake, &OPTIONS).per_process();
    let target = session.trace_target(FIRST_PID + 9).expect("target");
    assert!(target.is_target() && target.gen & USER_GEN_BIT != 0);
    session.observe(target.tgid);
    session.refresh().expect("refresh");
    assert_eq!(session.series_use().used, 2);
    session.kernel.exit(a, 20);
    session.kernel.exit(target, 20);
    session.refresh().expect("refresh");
    session.forget_gone();
    assert_eq!(session.series_use().used, 1, "only b's history is kept");
    assert!(session.proc_info(target).is_some(), "a target keeps its info for the report's header");
    assert!(session.proc_info(a).is_none());
}

#[test]
fn recordings_see_live_entries_without_a_sample() {
    let (a, b) = (proc(1, 1), proc(2, 1));
    let mut fake = FakeKernel::tracing_all();
    fake.spawn(a);
    fake.spawn(b);
    fake.acquire(a, 3, 10, 1);
    fake.acquire(b, 4, 10, 1);
    fake.exit(b, 15);
    let mut session = Session::new(fake, &OPTIONS);
    let entries = session.live_entries().expect("entries");
    assert_eq!(entries.iter().map(|(k, _)| (k.tgid, k.fd)).collect::<Vec<_>>(), vec![(a.tgid, 3)]);
    let held = session.held_entries(&entries).expect("held");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].what.kind_and_resource().0, Kind::Fd);
    assert_eq!(session.series_use().used, 0, "no sample was taken");
    // What b held was seen gone by the recording; it is not kept here.
    assert!(session.finish().expect("finish").groups.iter().all(|g| !g.pids.contains(&b.tgid)));
}

#[test]
fn a_fork_read_after_its_parent_exited_still_runs_the_parents_code() {
    use std::sync::Arc;

    use crate::proc_id::ImageId;
    use crate::symbolize::maps::MapsSnapshot;

    let (parent, child) = (proc(1, 1), proc(2, 1));
    let fake = FakeKernel::tracing_all();
    fake.spawn(parent);
    let mut session = Session::new(fake, &OPTIONS);
    let image = ImageId { proc: parent, exec_seq: 0 };
    session.resolver.insert(image, Arc::new(MapsSnapshot { mappings: vec![] }));
    // The child leaks and exits, the parent reaps it and exits: all before
    // the session reads a single event.
    session.kernel.fork(child, parent.tgid, 10);
    session.kernel.acquire(child, 3, 11, 1);
    session.kernel.exit(child, 12);
    session.kernel.exit(parent, 13);
    session.drain_events();
    assert!(session.resolver.has_snapshot(ImageId { proc: child, exec_seq: 0 }), "the child inherited the image");
    assert_eq!(session.resolver.latest_image(parent.tgid), Some(image));
}

#[test]
fn the_shared_libraries_tables_are_loaded_once_before_any_process_needs_them() {
    let cfi = SessionOptions { unwind: Unwind::Cfi, ..OPTIONS };
    let capacities = Capacities { entries: 64, stacks: 64, unwind_rows: 1 << 20, tcp: false };
    let mut session = Session::new(FakeKernel::new(true, capacities), &cfi);
    // This test process maps the C library as every traced process does.
    let rows = session.preload_shared_libraries();
    assert!(rows > 1000, "the C library's tables: {rows} rows");
    assert_eq!(session.kernel.rows_written(), rows as usize);
    assert_eq!(session.preload_shared_libraries(), 0, "tables are kept per file");
    let mut frame_pointers = Session::new(FakeKernel::tracing_all(), &OPTIONS);
    assert_eq!(frame_pointers.preload_shared_libraries(), 0, "no tables without CFI unwinding");
}
