"""Latency benchmarks of export bundles (`compact bench`), and the project's side-by-side benchmark scripts.

    bench/harness.py     TimingConfig, time_callable, compare_callables (the timing core other stages reuse)
    bench/runtimes/      one file per runtime, registered in RUNTIMES (list_runtimes / get_runtime)
    bench/run.py         bundles x runtimes x towers x batch sizes -> results
    bench/compare.py     two bundles or two runtimes, alternating blocks, ratio of medians with a 95% CI
    bench/report.py      report.json / .csv / .md, latency.png, pareto.png; merges results from many machines
    bench/ondevice.py    a self-contained folder + bench_runner.py (device_runner.py) for other devices
    bench/teacher_vs_student.py, bench/roofline.py, bench/distill_cache.py   scripts quoted by the README
"""
