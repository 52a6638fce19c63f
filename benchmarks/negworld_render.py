"""NegWorld rendering and export speed (target: >= 2,000 images/s per core at 64 px).

    python benchmarks/negworld_render.py [--images 2000] [--size 64] [--out benchmarks/results/negworld_render.json]

Per-core rates are measured as CPU time of this process (time.process_time), so other work on
a shared machine does not count against them; wall-clock rates are printed beside them. Rows:
the stages one by one in memory (sample, render, PNG encode with our encoder and with PIL's
save side by side, captions + VQA), then the whole `build_world` export to a temporary folder
(images, all JSON files, fsyncs), which is what `negationclip world build` runs, and the cost
of creating one small file on the chosen filesystem (on some machines /tmp costs ~1 ms a file).

Every row is an arm of ``_harness`` (interleaved runs, median [min-max], load average, busy
flag). CPU time still slows down on a loaded machine (shared caches, frequency), so the busy
flag matters here too. No FLOPs (integer rendering and compression), so no fraction of peak.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Arm, Bench, add_protocol_args, cli, parse_args, positive_int  # noqa: E402

from negationclip.data.negworld import WorldConfig, build_world, captions, questions, render  # noqa: E402
from negationclip.data.negworld.render import encode_png  # noqa: E402
from negationclip.data.negworld.scenes import sample_scene, scene_rng  # noqa: E402


def per_image(fn, n: int) -> dict:
    """Run ``fn`` once; CPU and wall time per image, images/s per core and wall."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = (time.process_time() - c0) / n, (time.perf_counter() - w0) / n
    return {"us_per_image_cpu": cpu * 1e6, "images_per_s_per_core": 1 / cpu, "images_per_s_wall": 1 / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=positive_int, default=2000, help="scenes per measurement")
    ap.add_argument("--size", type=positive_int, default=64, help="image side in pixels")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/negworld_render.json)")
    ap.add_argument("--workdir", default=None,
                    help="folder for the temporary export (default: benchmarks/results); file creation "
                         "cost differs a lot between filesystems, see the 'files' row")
    add_protocol_args(ap, threads=1)
    args = parse_args(ap, argv)
    if args.quick:
        args.images, args.runs = 50, 1
    bench = Bench("negworld_render", threads=args.threads, runs=args.runs, quick=args.quick)
    n = args.images
    cfg = WorldConfig(images=n, seed=0, size=args.size)
    scenes = [sample_scene(cfg, i, i) for i in range(1, n + 1)]
    images = [render(s) for s in scenes]
    out_dir = Path(args.workdir or (Path(args.out).parent if args.out else Path(__file__).parent / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm")
    ids = itertools.count()
    man: dict = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".negworld_bench.") as tmp:
        def files():
            fd = Path(tmp) / f"files{next(ids)}"
            fd.mkdir()
            r = per_image(lambda: [(fd / f"{i:06d}.png").write_bytes(b"x" * 400) for i in range(n)], n)
            shutil.rmtree(fd)
            return r

        def export(root: Path):
            w = root / f"w{next(ids)}"
            r = per_image(lambda: man.update(build_world(w, cfg, show_progress=False)), n)
            shutil.rmtree(w)
            return r

        arms = [
            Arm("sample", lambda: per_image(lambda: [sample_scene(cfg, i, i) for i in range(1, n + 1)], n),
                "sample scene graph"),
            Arm("render", lambda: per_image(lambda: [render(s) for s in scenes], n),
                f"render {args.size}px (2x supersampled)"),
            Arm("png", lambda: per_image(lambda: [encode_png(im) for im in images], n),
                "PNG encode (negworld encoder)"),
            Arm("png-pil", lambda: per_image(lambda: [im.save(io.BytesIO(), format="PNG", compress_level=1)
                                                      for im in images], n), "PNG encode (PIL save, level 1)"),
            Arm("text", lambda: per_image(lambda: [(captions(s, scene_rng(0, s.id, "c")),
                                                    questions(s, scene_rng(0, s.id, "q"))) for s in scenes], n),
                "captions + VQA questions"),
            Arm("files", files, "create one small file (this filesystem)"),
            Arm("export", lambda: export(Path(tmp)), "full build_world export (to disk)"),
        ]
        shm_tmp = None
        if shm.is_dir() and os.access(shm, os.W_OK):
            shm_tmp = tempfile.mkdtemp(dir=shm, prefix="negworld_bench.")
            arms.append(Arm("export-shm", lambda: export(Path(shm_tmp)), "full build_world export (tmpfs /dev/shm)"))
        try:
            bench.measure(arms)
        finally:
            if shm_tmp:
                shutil.rmtree(shm_tmp, ignore_errors=True)
    bench.conclude()
    r = bench.ratio("PNG encoder speed-up over PIL save (CPU time)", "png-pil", "png", key="us_per_image_cpu")
    exports = [k for k in ("export", "export-shm") if k in bench.arms]
    best = max(exports, key=lambda k: bench.arms[k]["images_per_s_per_core"]["median"])
    for k in exports:
        v = bench.arms[k]["images_per_s_per_core"]
        bench.target(f"{bench.arms[k]['label']}, images/s per core", v["median"], ">=", 2000,
                     spread=(v["min"], v["max"]))
    v = bench.arms[best]["images_per_s_per_core"]
    bench.set_headline(f"NegWorld export at {args.size}px, images/s per core ({best})", v["median"],
                       v["min"], v["max"], "images/s")
    bench.write(args.out, columns=["us_per_image_cpu", "images_per_s_per_core", "images_per_s_wall"],
                config={"images": n, "size": args.size, "workdir": str(out_dir)},
                extra={"png_speedup_vs_pil": r["median_ratio"],
                       "foil_images": man["counts"]["foil_images"],
                       "negation_pairs": man["counts"]["negation_pairs"]})
    print(f"each export also renders {man['counts']['foil_images']} foil images for "
          f"{man['counts']['negation_pairs']} negation pairs on top of the {n} scenes")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
