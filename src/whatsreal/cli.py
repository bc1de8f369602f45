"""The ``whatsreal`` command: a trained model on your own cutouts, and trainings compared.

::

    whatsreal export results/sim/runs/main my_model        # a run -> a self-contained model directory
    whatsreal info my_model                                 # what it was trained on, with which settings
    whatsreal embed my_model cutouts.fits --survey hsc -o embeddings.parquet
    whatsreal generate my_model --galaxy legacy.fits --from legacysurvey --to hsc \\
        --neighbours hsc_neighbours.fits -n 32 -o counterfactual.fits
    whatsreal criteria results/sim_s1 results/sim_s2 results/sim_s3   # the paper's claims, per training

Each command checks its inputs before it computes and writes its output atomically; a
problem ends it with one line naming the file and what to do (exit status 2), never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("whatsreal")


def _export(args: argparse.Namespace) -> None:
    from whatsreal.export import export_model
    from whatsreal.layout import DatasetLayout, RunLayout
    from whatsreal.surveys import SURVEY_ORDER

    run = RunLayout(Path(args.run_dir))
    if not run.model.exists():
        raise UsageError(f"{run.model}: no trained model in {run.root}; train it first (snakemake ...runs/<run>/...)")
    # A run lives in its dataset's runs/ folder (whatsreal.layout); --data names another dataset root.
    data = DatasetLayout(Path(args.data)) if args.data else DatasetLayout(run.root.parent.parent)
    meta = {s: data.meta(s) for s in SURVEY_ORDER}
    missing = [str(p) for p in meta.values() if not p.exists()]
    if missing:
        raise UsageError(f"{missing[0]}: not found; pass --data with the dataset's results folder (results/<name>)")
    out = export_model(run.model, meta, args.out_dir, run=run.root.name)
    print(out.root)


def _info(args: argparse.Namespace) -> None:
    import whatsreal

    model = whatsreal.load(args.model, device="cpu")
    print(json.dumps(model.info(), indent=2, default=str))


def _embed(args: argparse.Namespace) -> None:
    import whatsreal
    from whatsreal.cutouts import read_cutouts
    from whatsreal.io import write_parquet

    out = Path(args.output)
    if out.suffix != ".parquet":
        raise UsageError(f"{out}: the output is a parquet table; name it *.parquet")
    model = whatsreal.load(args.model, device=args.device)
    cutouts = read_cutouts(args.input, args.survey)
    log.info("%s: %d cutouts of %s", args.input, len(cutouts), args.survey)
    x = model.preprocess(cutouts, args.survey)
    emb = model.embed(x, args.survey, batch_size=args.batch_size)
    table = emb.table(args.survey, cutouts.object_id, cutouts.ra, cutouts.dec)
    write_parquet(table, out)
    log.info("wrote %s (%d rows)", out, len(table))


def _generate(args: argparse.Namespace) -> None:
    import whatsreal
    from whatsreal.cutouts import read_cutouts
    from whatsreal.fits_images import NATIVE_BUNIT, write_image_fits

    out = Path(args.output)
    if out.suffix.lower() not in (".fits", ".fit", ".fts"):
        raise UsageError(f"{out}: the output is FITS; name it *.fits")
    model = whatsreal.load(args.model, device=args.device)
    galaxy = read_cutouts(args.galaxy, args.from_survey)
    if args.object_id is not None:
        hit = [i for i, oid in enumerate(galaxy.object_id) if str(oid) == args.object_id]
        if not hit:
            raise UsageError(f"{args.galaxy}: no object '{args.object_id}' (it has {list(galaxy.object_id)[:5]}...)")
        index = hit[0]
    elif len(galaxy) == 1:
        index = 0
    else:
        raise UsageError(f"{args.galaxy}: {len(galaxy)} objects; pick one with --object-id")
    neighbours = [read_cutouts(p, args.to_survey) for p in args.neighbours]
    x = model.preprocess(galaxy, args.from_survey)[index]
    views = [model.preprocess(n, args.to_survey) for n in neighbours]
    import numpy as np

    samples = model.counterfactual(
        x,
        args.from_survey,
        args.to_survey,
        instrument_views=np.concatenate(views),
        n=args.n,
        steps=args.steps,
        method=args.method,
        seed=args.seed,
    )
    flux = model.to_flux(samples, args.to_survey)
    prov = model.provenance
    write_image_fits(
        out,
        flux,
        survey=args.to_survey,
        bands=list(model.bands),
        ra=float(galaxy.ra[index]),
        dec=float(galaxy.dec[index]),
        object_id=str(galaxy.object_id[index]),
        pixel_scale_arcsec=model.pixel_scale(args.to_survey),
        bunit=NATIVE_BUNIT[args.to_survey],
        header_extra={
            "FROMSURV": args.from_survey,
            "MODEL": str(model.path),
            "RUN": str(prov.get("run")),
            "TRSTEPS": int(prov.get("steps", 0)),
            "COMMIT": str(prov.get("git_commit", "unknown")),
            "SAMPLER": args.method or model.config["sample"]["method"],
            "STEPS": int(args.steps or model.config["sample"]["steps"]),
            "SEED": int(args.seed),
            "NVIEWS": int(sum(len(v) for v in views)),
        },
        sample_axis=True,
    )
    log.info("wrote %s: %d samples of %s as %s would see it", out, args.n, galaxy.object_id[index], args.to_survey)


def _criteria(args: argparse.Namespace) -> None:
    import math

    from whatsreal.experiments.criteria import CLAIMS, criteria_across, read_criteria
    from whatsreal.io import write_csv
    from whatsreal.layout import DatasetLayout
    from whatsreal.markdown import markdown_table

    names = [Path(d).name for d in args.datasets]
    if len(set(names)) != len(names):
        raise UsageError(f"two datasets share a folder name ({', '.join(names)}); each names a column")
    try:
        tables = {
            name: read_criteria(DatasetLayout(Path(d)).criteria) for name, d in zip(names, args.datasets, strict=True)
        }
    except ValueError as err:  # a file that is not a criteria table
        raise UsageError(str(err)) from err
    table = criteria_across(tables)
    if args.output:
        write_csv(table, args.output)
        log.info("wrote %s (%d rows)", args.output, len(table))
    rows = [
        [
            CLAIMS.get(row["criterion"], row["criterion"]),
            row["survey"],
            row["target"] or row["targets"],
            f"{row['met_in']} of {row['n']}",
            *("-" if math.isnan(row[n]) else f"{row[n]:.4g}" for n in names),
        ]
        for row in table.to_dict("records")
    ]
    print("\n".join(markdown_table(["claim", "survey", "target", "met in", *names], rows)))


class UsageError(ValueError):
    """A command-line input problem: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    from whatsreal.surveys import SURVEY_ORDER

    p = argparse.ArgumentParser(
        prog="whatsreal", description="Use a trained whatsreal model on your own cutouts; compare trainings' results."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more (debug level)")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="a trained run -> a self-contained model directory (safetensors + JSON)")
    e.add_argument("run_dir", help="the run's folder, results/<dataset>/runs/<run>")
    e.add_argument("out_dir", help="the model directory to write (replaced whole if it exists)")
    e.add_argument("--data", help="the dataset's results folder (default: the run folder's ../..)")
    e.set_defaults(func=_export)

    i = sub.add_parser("info", help="what a model was trained on, with which settings")
    i.add_argument("model", help="an exported model directory")
    i.set_defaults(func=_info)

    m = sub.add_parser("embed", help="cutouts -> physics and instrument embeddings (parquet)")
    m.add_argument("model", help="an exported model directory")
    m.add_argument("input", help="FITS (one HDU per object, or a cube + table), an MMU HDF5 shard, or a folder of them")
    m.add_argument("--survey", required=True, choices=SURVEY_ORDER, help="the survey the cutouts come from")
    m.add_argument("-o", "--output", required=True, help="the table to write (*.parquet)")
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU if there is one)")
    m.set_defaults(func=_embed)

    g = sub.add_parser("generate", help="a galaxy as another survey would see it (posterior samples, FITS)")
    g.add_argument("model", help="an exported model directory")
    g.add_argument("--galaxy", required=True, help="the galaxy's cutout file (as for embed)")
    g.add_argument("--object-id", help="which object of --galaxy, when it holds several")
    g.add_argument("--from", dest="from_survey", required=True, choices=SURVEY_ORDER, help="the survey of --galaxy")
    g.add_argument("--to", dest="to_survey", required=True, choices=SURVEY_ORDER, help="the survey to render it as")
    g.add_argument(
        "--neighbours", nargs="+", required=True, help="cutout files of other --to galaxies nearby (the conditions)"
    )
    g.add_argument("-n", type=int, default=32, help="posterior samples (default 32)")
    g.add_argument("--steps", type=int, help="ODE steps (default: the model's sampler setting)")
    g.add_argument("--method", choices=("euler", "heun", "midpoint"), help="ODE solver (default: the model's)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("-o", "--output", required=True, help="the FITS file to write: mean in the primary HDU, SAMPLES")
    g.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU if there is one)")
    g.set_defaults(func=_generate)

    c = sub.add_parser(
        "criteria",
        help="several datasets' criteria.csv side by side: how many trainings meet each of the paper's claims",
    )
    c.add_argument("datasets", nargs="+", help="results folders (results/<name>), e.g. one per training seed")
    c.add_argument("-o", "--output", help="also write the table as CSV")
    c.set_defaults(func=_criteria)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from whatsreal.api import InputError
    from whatsreal.cutouts import CutoutError
    from whatsreal.export import ModelFormatError

    try:
        args.func(args)
    except BrokenPipeError:  # the output went to a pager or `head` that stopped reading
        return 0
    except (UsageError, InputError, CutoutError, ModelFormatError, FileNotFoundError) as err:
        print(f"whatsreal {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
