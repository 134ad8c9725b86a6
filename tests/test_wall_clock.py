"""Where a run's wall time goes: phases partition the time they cover (the run's line and report:
tests/test_report.py)."""

import time

from autotune import wall_clock


def test_a_nested_phase_counts_for_itself_only_and_the_two_cover_the_whole():
    wall_clock.reset()
    start = time.monotonic()
    with wall_clock.phase("search"):
        time.sleep(0.05)
        with wall_clock.phase("re-timing"):
            time.sleep(0.05)
        time.sleep(0.05)
    whole = time.monotonic() - start
    timed = wall_clock.seconds()
    # However loaded the machine, sleeps only last longer: lower bounds from them, and the two
    # phases together never more than the time they cover (each rounded to 0.01 s).
    assert timed["search"] >= 0.1 and timed["re-timing"] >= 0.05
    assert timed["search"] + timed["re-timing"] <= whole + 0.01
    assert list(timed)[:2] == ["search", "re-timing"]  # run order, whatever order they ran in
    wall_clock.reset()
    assert "search" not in wall_clock.seconds()


def test_start_up_is_the_process_age_at_the_first_bucket():
    wall_clock.reset()
    age = wall_clock.process_age()
    assert age is not None and 0 < age < 24 * 3600
    wall_clock.mark_started()
    first = wall_clock.seconds()["start-up"]
    wall_clock.mark_started()  # a second bucket loop (the workers' share) does not move it
    assert wall_clock.seconds()["start-up"] == first
    assert first >= age - 0.01  # seconds() rounds to 0.01 s
    assert wall_clock.seconds()["total"] >= first


def test_the_waits_are_shown_inside_the_search_and_not_counted_again():
    from autotune.__main__ import wall_time_line

    line = wall_time_line({"start-up": 2.0, "search": 30.0, "re-timing": 10.0, "total": 45.0,
                           "compile wait": 8.0, "worker start": 0.02})
    # worker start rounds to 0.0: left out; the waits are part of the search's 30 s, so
    # "other" is what no phase covers
    assert line == ("wall time 45.0 s: start-up 2.0, search 30.0 (compile wait 8.0), "
                    "re-timing 10.0, other 3.0")
    line = wall_time_line({"search": 30.0, "total": 31.0, "compile wait": 8.0,
                           "worker start": 1.24})
    assert line == "wall time 31.0 s: search 30.0 (compile wait 8.0, worker start 1.2), other 1.0"


def test_work_alongside_the_phases_is_timed_apart_and_shown_beside_the_search():
    import threading

    from autotune.__main__ import wall_time_line

    wall_clock.reset()

    def settle():
        with wall_clock.alongside():
            with wall_clock.phase("re-timing"):  # inside `alongside`: not a phase of its own
                time.sleep(0.1)

    with wall_clock.phase("search"):
        background = threading.Thread(target=settle)
        background.start()
        time.sleep(0.05)
        background.join()
    timed = wall_clock.seconds()
    assert "re-timing" not in timed
    assert timed[wall_clock.ALONGSIDE] >= 0.1
    assert timed["search"] >= 0.1  # the search's own clock ran through it
    line = wall_time_line({"search": 30.0, "total": 32.0, "compile wait": 8.0,
                           wall_clock.ALONGSIDE: 20.0})
    # overlapping the search, it is not added to what the phases cover
    assert line == ("wall time 32.0 s: search 30.0 (compile wait 8.0, re-timing alongside 20.0), "
                    "other 2.0")
    wall_clock.reset()


def test_the_start_up_steps_are_logged_with_their_own_seconds_when_the_first_bucket_begins(caplog):
    wall_clock.begin_run()  # as the command line does: no steps of an earlier run in the process
    wall_clock.start_up_step("imports")
    time.sleep(0.05)
    wall_clock.start_up_step("plan")
    caplog.set_level("INFO", logger="autotune.wall_clock")
    wall_clock.mark_started()
    line = caplog.messages[-1]
    total = wall_clock.seconds()["start-up"]
    assert line.startswith(f"start-up {total:.1f} s: imports ")
    steps = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
    assert list(steps) == ["imports", "plan", "the rest"]
    assert float(steps["plan"]) >= 0.0 and abs(sum(map(float, steps.values())) - total) < 0.2
    wall_clock.start_up_step("late")  # after the start: nothing more to tell
    wall_clock.reset()
    wall_clock.mark_started()  # a later run in this process starts with no steps of the first
    assert len([m for m in caplog.messages if m.startswith("start-up")]) == 1


def test_a_later_job_of_a_sweep_is_timed_from_its_own_beginning():
    wall_clock.begin_run()
    time.sleep(0.3)
    wall_clock.begin_run()  # the sweep's next job, in the same process
    wall_clock.mark_started()
    assert wall_clock.seconds()["start-up"] < 0.3 <= wall_clock.process_age()
    assert wall_clock.seconds()["total"] < 0.3
