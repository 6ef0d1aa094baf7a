"""Command line: `python -m vaelib train|report|bench ...` (see --help of each)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from vaelib.config import PRESETS, RECON_LOSSES, SCHEDULES, get_preset, with_overrides
from vaelib.io.paths import check_files, check_folder, check_name_lengths

TRAIN_OVERRIDES = {  # flag -> (config field, type, help)
    "epochs": ("train.epochs", int, "passes over the training set"),
    "batch_size": ("train.batch_size", int, "images per step"),
    "lr": ("train.lr", float, "Adam learning rate"),
    "beta": ("train.schedule.beta", float, "target KL weight"),
    "schedule": ("train.schedule.kind", str, f"beta schedule: {', '.join(SCHEDULES)}"),
    "warmup_epochs": ("train.schedule.warmup_epochs", float, "warmup schedule: epochs at beta 0"),
    "grad_clip": ("train.grad_clip", float, "max global gradient norm (default: preset's)"),
    "recon": ("train.recon", str, f"reconstruction term: {', '.join(RECON_LOSSES)} (perceptual: not a density)"),
    "free_bits": ("train.free_bits", float, "KL floor per latent dimension, nats"),
    "seed": ("train.seed", int, "random seed"),
    "stop_tol": ("train.stop_tol", float, "stop once converged at this tolerance (0: every epoch; --epochs caps)"),
    "min_epochs": ("train.min_epochs", int, "with --stop-tol: never stop before this many epochs"),
    "precision": ("train.precision", str, "fp32 or bf16 (autocast)"),
    "latent_dim": ("model.latent_dim", int, "size of z"),
    "max_train": ("data.max_train", int, "use only the first N training images"),
    "image_size": ("data.image_size", int, "image side in pixels"),
    "root": ("data.root", str, "folder of the torchvision datasets"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (pointing at --help) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"vaelib: error: {message} (see {self.prog} --help)\n")


def _debug_flag(p: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    p.add_argument("--debug", action="store_true", default=default,
                   help="show the full traceback of an error (also: VAELIB_DEBUG=1)")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a preset, write checkpoint, history, metrics and figures",
                       description="Train a VAE preset; writes checkpoint.pt, history.json, metrics.json "
                                   "and PNG figures to --out. Re-running resumes from the checkpoint.")
    p.add_argument("--preset", default="mnist", help=f"one of {', '.join(PRESETS)} (default: mnist)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<preset>)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="write into --out even if it holds another run or files vaelib did not write")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard logs to DIR (view: tensorboard --logdir DIR)")
    _debug_flag(p)
    for flag, (_, typ, help_) in TRAIN_OVERRIDES.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, default=None, help=help_)


def _train(args: argparse.Namespace) -> int:
    from vaelib.experiments.single_run import run_experiment  # lazy: only this subcommand needs it
    from vaelib.training import distributed  # lazy: only this subcommand needs it

    _check_paths(args, "out", "tensorboard")
    config = get_preset(args.preset)
    overrides = {field: getattr(args, flag) for flag, (field, _, _) in TRAIN_OVERRIDES.items()
                 if getattr(args, flag) is not None}
    if args.download:
        overrides["data.download"] = True
    config = with_overrides(config, **overrides)
    out = args.out or f"runs/{config.name}"
    if args.tensorboard is not None:
        check_folder(args.tensorboard, "--tensorboard folder")
    device = distributed.init(args.device) if distributed.launched_by_torchrun() else args.device
    result = run_experiment(config, out, device=device, quiet=args.quiet, log_dir=args.tensorboard,
                            force=args.force)
    if not distributed.is_main():
        return 0
    m = result["metrics"]
    print(json.dumps({"out": out, "test_elbo": m["test_elbo"], "recon_mse": m["recon_mse"],
                      "data_mean_baseline_mse": m["data_mean_baseline_mse"],
                      "mse_over_baseline": m["mse_over_baseline"], "psnr_db": m["psnr_db"],
                      "active_units": m["active_units"], "iw_nll": m["iw_nll"]}, indent=2))
    print(f"wrote {out}/metrics.json, checkpoint.pt, history.json and {len(result['figures'])} figures")
    return 0


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="run the lessons and studies and render reports/<dataset>-<budget>/",
                       description="Execute the lessons notebooks/NN_*.ipynb, then the studies "
                                   "notebooks/studies/*.ipynb, with papermill for one dataset and render "
                                   "them with nbconvert into reports/<dataset>-<budget>/ (HTML, executed notebooks, "
                                   "figures, metrics.json); updates reports/index.html.")
    p.add_argument("--dataset", default="mnist", help="mnist, digits, shapes, fashion_mnist, cifar10 or celeba")
    p.add_argument("--budget", default="small", help="tiny (seconds), small (minutes on a CPU) or full")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--out", default=None, help="reports folder (default: reports/); the report goes into "
                                                 "<out>/<dataset>-<budget>/")
    p.add_argument("--force", action="store_true", help="replace a report made there with other parameters")
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed per notebook cell")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="extra notebook parameter, given to the notebooks that declare it; its name, type and "
                        "range are checked before any notebook runs (strings as they are, else JSON: 2, 0.5, "
                        "true, [0.1, 4.0])")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="re-execute only this notebook (e.g. 03_stability_ablations or studies/stability; repeat "
                        "for more) into the existing report made with the same parameters, keeping the others")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _debug_flag(p)


def _report(args: argparse.Namespace) -> int:
    from vaelib.reporting.params import parse_value  # lazy: only this subcommand needs it
    from vaelib.reporting.report import (  # lazy: only this subcommand needs it
        NotebookFailed,
        build_report,
        report_notebooks,
    )

    _check_paths(args, "out")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out!r} is a file: allowed a folder (new or existing)")
    if args.out:
        check_folder(args.out, "--out folder")  # under a file
    if args.timeout < 1:
        raise ValueError(f"--timeout {args.timeout} is invalid: allowed seconds >= 1")
    notebooks = report_notebooks()
    extra = {name: parse_value(name, value, notebooks) for name, value in args.param}
    try:
        out = build_report(args.dataset, args.budget, seed=args.seed, device=args.device, extra=extra,
                           out_root=args.out, timeout=args.timeout, quiet=args.quiet,
                           force=args.force, only=args.only)
    except NotebookFailed as err:
        print(f"vaelib: error: {err}", file=sys.stderr)
        return 1
    print(f"report written to {out}/index.html")
    return 0


def _timings_parser(sub) -> None:
    p = sub.add_parser("timings", help="the table of report times, from reports/*/metrics.json",
                       description="Print (or, with --write, put into a file's timings block) the seconds per "
                                   "notebook of every report under --reports, read from their metrics.json.")
    p.add_argument("--reports", default=None, help="reports folder (default: reports/)")
    p.add_argument("--write", default=None, metavar="FILE", help="replace the timings block of FILE (README.md)")
    _debug_flag(p)


def _timings(args: argparse.Namespace) -> int:
    from vaelib.reporting.pages import timings_markdown, write_timings
    from vaelib.reporting.report import workspace

    _check_paths(args, "reports")
    root = args.reports or workspace() / "reports"
    if args.write is None:
        print(timings_markdown(root))
    else:
        changed = write_timings(args.write, root)
        print(f"{args.write}: timings {'updated' if changed else 'already up to date'}")
    return 0


def _notebooks_parser(sub) -> None:
    p = sub.add_parser("notebooks", help="copy the lessons and studies into a folder",
                       description="Copy the lessons notebooks/NN_*.ipynb and the studies notebooks/studies/*.ipynb "
                                   "(shipped inside an installed vaelib) into DIR and DIR/studies, to open with "
                                   "`jupyter lab DIR`; their runs/ and data/ go beside DIR.")
    p.add_argument("dir", help="the folder to copy them into (created if missing)")
    p.add_argument("--force", action="store_true", help="replace notebooks of the same names in DIR")
    p.add_argument("--student", action="store_true",
                   help="the student edition of the lessons: outputs cleared, instructor notes (cells tagged "
                        "'instructor') and nbgrader solution regions removed; no studies")
    _debug_flag(p)


def _notebooks(args: argparse.Namespace) -> int:
    from vaelib.reporting.report import copy_notebooks, notebook_name, report_notebooks  # lazy: only this needs it

    check_folder(args.dir, "notebooks folder")  # DIR under a file, or a notebook's name taken by a folder: refused
    check_files(args.dir, [f"{notebook_name(p)}.ipynb" for p in report_notebooks()], "notebook")  # before copying
    written = copy_notebooks(args.dir, force=args.force, student=args.student)
    edition = "the student edition of " if args.student else ""
    print(f"copied {edition}{len(written)} notebooks into {args.dir}: open them with `jupyter lab {args.dir}`")
    return 0


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="training throughput, side by side: naive, bare, fit and its options",
                       description="Measure images/s of the naive tutorial loop, a bare loop and fit with each "
                                   "fast-path option, in alternating rounds; print ratios; write JSON + plot.")
    p.add_argument("--preset", default="fashion_mnist", help="a preset name, or 'all' for the four report presets")
    p.add_argument("--batch-sizes", default="128,best", help="comma list; 'best' searches 64..512 first")
    p.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (median reported)")
    p.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to warm up)")
    p.add_argument("--out", default="reports/benchmarks", help="folder for bench.json, bench.png, bench.txt")
    _debug_flag(p)


def _bench(args: argparse.Namespace) -> int:
    from vaelib.io.files import save_json, write_text  # lazy: only this subcommand needs it
    from vaelib.io.provenance import versions  # lazy: only this subcommand needs it
    from vaelib.perf import bench  # lazy: only this subcommand needs it

    presets = ["fashion_mnist", "cifar10", "celeba_small", "celeba"] if args.preset == "all" else [args.preset]
    _check_paths(args, "out")
    for flag in ("rounds", "steps"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} {getattr(args, flag)} is invalid: allowed an integer >= 1")
    items = _check_bench_sizes(args.batch_sizes, presets, args.device)  # all checked before any measuring
    check_folder(args.out, "--out folder")
    results, searches = [], {}
    with bench.Workers() as workers:
        for name in presets:
            sizes = []
            for item in items:
                if item == "best":
                    best, searches[name] = bench.best_batch_size(name, device=args.device, workers=workers)
                    speeds = ", ".join(f"{k}: {v:.0f}" for k, v in searches[name].items())
                    print(f"{name}: best batch size {best} ({speeds} img/s)", flush=True)
                    sizes.append(best)
                else:
                    sizes.append(int(item))
            results += bench.bench_preset(name, tuple(dict.fromkeys(sizes)), rounds=args.rounds,
                                          steps=args.steps, device=args.device, compile_=args.compile,
                                          log=lambda m: print(m, flush=True), workers=workers)
    text = bench.table(results)
    print(text)
    out = Path(args.out)
    save_json(out / "bench.json", {"results": results, "batch_size_search": searches, "host": bench.host_info(),
                                   "versions": versions(), "command": " ".join(sys.argv)})
    write_text(out / "bench.txt", text + "\n")
    bench.plot(results, out / "bench.png")
    print(f"wrote {out}/bench.json, bench.txt and bench.png")
    return 0


MAX_BENCH_BATCH = 65536  # images per step: far above any batch that fits a laptop, refused before any worker starts


def _check_bench_sizes(text: str, presets: list[str], device: str) -> list[str]:
    """The --batch-sizes items, each 'best' or an integer in [1, MAX_BENCH_BATCH] whose model and batch fit in
    the device's memory (vaelib.training.resources' estimate), checked for every preset before anything is measured."""
    from vaelib.runtime import resolve_device  # lazy: only this subcommand needs it
    from vaelib.training.resources import check_memory  # lazy: only this subcommand needs it

    dev = resolve_device(device)
    items = text.split(",")
    for item in items:
        if item != "best" and not (item.isdigit() and 1 <= int(item) <= MAX_BENCH_BATCH):
            raise ValueError(f"--batch-sizes item {item!r} is invalid: allowed integers in [1, {MAX_BENCH_BATCH}] "
                             "or 'best'")
    for name in presets:
        config = get_preset(name)
        for item in items:
            if item != "best":
                check_memory(with_overrides(config, **{"train.batch_size": int(item)}), dev)
    return items


def _check_paths(args: argparse.Namespace, *flags: str) -> None:
    """Refuse an empty path option (`--out ""` would silently mean the default) and one the file system cannot
    hold (a name over 255 bytes)."""
    for flag in flags:
        value = getattr(args, flag, None)
        if value is not None and not str(value).strip():
            raise ValueError(f"--{flag} {value!r} is invalid: allowed a folder path (omit --{flag} for the default)")
        if value is not None:
            check_name_lengths(value, f"--{flag}")  # 'File name too long' only after work, else


def _user_error(err: BaseException) -> str | None:
    """The one-line message for an error the user caused (a bad value, file or folder, a full disk), else None."""
    from vaelib.io.lock import RunLocked  # lazy: only a failed command needs it
    from vaelib.training.trainer import NonFiniteLossError  # lazy: only a failed command needs it

    if isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, FileExistsError)):
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full while writing {err.filename or 'the output'}"
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot write {err.filename or 'the output'}: {err.strerror}; allowed a folder you can write to"
        return None
    if isinstance(err, (ValueError, FileNotFoundError, FileExistsError, NonFiniteLossError, RunLocked)):
        return " ".join(str(err).split())
    return None


INTERRUPTED = {  # what a Ctrl-C leaves, by command
    "train": "the last finished epoch's checkpoint stands: run the same command to resume from it",
    "report": "the report's folder is as it was before this build: run the same command to build it again",
}


def main(argv: list[str] | None = None) -> int:
    """Run a command; an error the user caused is one line on stderr and exit code 2 (--debug: the traceback)."""
    parser = _Parser(prog="python -m vaelib", description="vaelib command line")
    _debug_flag(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _report_parser(sub)
    _bench_parser(sub)
    _timings_parser(sub)
    _notebooks_parser(sub)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error, already printed (2)
        return int(done.code or 0)
    try:
        commands = {"train": _train, "report": _report, "bench": _bench, "timings": _timings, "notebooks": _notebooks}
        return commands[args.command](args)
    except KeyboardInterrupt:  # Ctrl-C is a normal stop: the last checkpoint stands, the same command resumes
        if args.debug or os.environ.get("VAELIB_DEBUG", "0") not in ("", "0"):
            raise
        print(f"vaelib: interrupted; {INTERRUPTED.get(args.command, 'nothing was left half-written')}", file=sys.stderr)
        return 130
    except Exception as err:
        message = _user_error(err)
        if message is None or args.debug or os.environ.get("VAELIB_DEBUG", "0") not in ("", "0"):
            raise
        print(f"vaelib: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
