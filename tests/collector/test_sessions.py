from collector.sessions import AIR, LAN, Sessionizer, VisitRecord

GAP, DWELL = 900.0, 300.0


def test_a_run_with_small_gaps_is_one_visit():
    s = Sessionizer(GAP, DWELL)
    for t in range(0, 1800, 60):
        assert s.observe("aa", LAN, float(t)) is None
    assert s.sweep(1740 + GAP + 1) == [VisitRecord("aa", LAN, 0.0, 1740.0, 30, False)]


def test_a_long_gap_splits_visits():
    s = Sessionizer(GAP, DWELL)
    s.observe("aa", LAN, 0.0)
    s.observe("aa", LAN, 600.0)
    closed = s.observe("aa", LAN, 600.0 + GAP + 1)
    assert closed == VisitRecord("aa", LAN, 0.0, 600.0, 2, False)
    assert s.close_all() == [VisitRecord("aa", LAN, 1501.0, 1501.0, 1, True)]


def test_short_runs_are_passersby():
    s = Sessionizer(GAP, DWELL)
    s.observe("bb", LAN, 0.0)
    s.observe("bb", LAN, 299.0)
    assert s.close_all()[0].passerby is True


def test_sources_are_kept_apart():
    s = Sessionizer(GAP, DWELL)
    s.observe("cc", LAN, 0.0)
    s.observe("cc", AIR, 10.0)
    assert {(v.source, v.start) for v in s.close_all()} == {(LAN, 0.0), (AIR, 10.0)}


def test_sweep_closes_only_idle_runs():
    s = Sessionizer(GAP, DWELL)
    s.observe("old", LAN, 0.0)
    s.observe("new", LAN, 1000.0)
    assert [v.mac for v in s.sweep(1000.0)] == ["old"]
    assert s.open_count() == 1


def test_out_of_order_frames_do_not_shrink_a_run():
    s = Sessionizer(GAP, DWELL)
    s.observe("dd", LAN, 100.0)
    s.observe("dd", LAN, 50.0)
    s.observe("dd", LAN, 700.0)
    assert s.close_all() == [VisitRecord("dd", LAN, 50.0, 700.0, 3, False)]


def test_restored_run_continues():
    s = Sessionizer(GAP, DWELL)
    s.restore(LAN, "ee", 0.0, 500.0, 10)
    s.observe("ee", LAN, 800.0)
    assert s.close_all() == [VisitRecord("ee", LAN, 0.0, 800.0, 11, False)]


def test_dirty_runs_report_ended_ones():
    s = Sessionizer(GAP, DWELL)
    s.observe("ff", LAN, 0.0)
    assert [(src, mac, run.start) for src, mac, run in s.take_dirty()] == [(LAN, "ff", 0.0)]
    assert list(s.take_dirty()) == []
    s.sweep(GAP + 10)
    assert [(src, mac, run) for src, mac, run in s.take_dirty()] == [(LAN, "ff", None)]
