"""``curate pipeline``: the whole path from raw crawl to an RLHF-tuned model (thin CLI)."""

from __future__ import annotations

import click

from curate.cli.common import engine_options


@click.command("pipeline")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--workdir", default=None, help="Work directory (default: the config's `workdir`, else ./work).")
@click.option("--until", "until", default=None, metavar="STAGE", help="Stop after this stage.")
@click.option(
    "--from",
    "from_stage",
    default=None,
    metavar="STAGE",
    help="Start at this stage; the ones before must have completed with the settings they have now.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the folders of the stages this run covers (within --from/--until) and redo them "
    "from scratch, even if up to date; stages before --from are kept.",
)
@click.option(
    "--workers", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores)."
)
@engine_options(
    default=None,
    engine_help="Run the data stages (crawl to mix) on local worker processes (the default) or as Ray "
    "tasks (the `ray` extra; the work directory must then be storage every node sees). The outputs are "
    "the same. With --plan: the engine planned for (default: ray on more than one node).",
)
@click.option(
    "--plan",
    is_flag=True,
    help="Run nothing: print per stage the expected time, memory, disk, network read and cost "
    "for --input on --cluster, from the rates the benches measured.",
)
@click.option(
    "--input",
    "input_size",
    default=None,
    metavar="SIZE-OR-SNAPSHOT",
    help="With --plan: compressed WARC bytes (10TB), WARC files (1000warc) or a Common Crawl "
    "snapshot (CC-MAIN-2024-10: its published page count).",
)
@click.option(
    "--cluster",
    default=None,
    metavar="NODESxCORESxMEM[+GPUSxTYPE]",
    help="With --plan: e.g. 16x32x128GB, or 16x32x128GB+8xH100 (GPUs in all) for training.",
)
@click.option(
    "--price-core-hour", type=click.FloatRange(min=0), default=None, help="With --plan: price of a core-hour."
)
@click.option("--price-gpu-hour", type=click.FloatRange(min=0), default=None, help="With --plan: price of a GPU-hour.")
def pipeline(
    config,
    workdir,
    until,
    from_stage,
    overwrite,
    workers,
    engine,
    ray_address,
    plan,
    input_size,
    cluster,
    price_core_hour,
    price_gpu_hour,
):
    """Run crawl -> filter -> dedup -> tokenizer -> mix -> pretrain -> sft -> reward -> rlhf (-> eval).

    Each stage writes its own folder under the work directory; stages already complete with
    the same settings are skipped, so an interrupted pipeline resumes where it stopped, and a
    stage whose settings changed is redone with every stage after it.

    \b
    Examples:
      curate pipeline samples/pipeline.toml --until dedup
      curate pipeline samples/pipeline.toml --from pretrain      # data stages must be up to date
      curate pipeline samples/pipeline.toml --overwrite --from sft --until sft
      curate pipeline cc.toml --until mix --engine ray --ray-address auto
      curate pipeline samples/pipeline.toml --plan --input CC-MAIN-2024-10 \\
          --cluster 16x32x128GB+8xH100 --price-core-hour 0.04 --price-gpu-hour 2.5
    """
    from curate.core.errors import ConfigError
    from curate.workflow import format_summary, load_pipeline, run_pipeline

    if plan:
        from curate.workflow.plan_cost import format_plan, plan_pipeline
        from curate.workflow.plan_inputs import parse_cluster, parse_input

        if input_size is None or cluster is None:
            raise ConfigError("--plan needs --input SIZE-OR-SNAPSHOT and --cluster NODESxCORESxMEM[+GPUSxTYPE]")
        inp, spec = parse_input(input_size), parse_cluster(cluster)
        pipe = load_pipeline(config, workdir=workdir, workers=workers)
        plans = plan_pipeline(pipe, inp, spec, price_core_hour, price_gpu_hour, engine=engine)
        click.echo(format_plan(plans, inp, spec, price_core_hour, price_gpu_hour))
        return
    given = (
        ("--input", input_size),
        ("--cluster", cluster),
        ("--price-core-hour", price_core_hour),
        ("--price-gpu-hour", price_gpu_hour),
    )
    for name, value in given:
        if value is not None:
            raise ConfigError(f"{name} is used only with --plan")
    if ray_address and engine != "ray":
        raise ConfigError("--ray-address is used only with --engine ray")
    pipe = load_pipeline(config, workdir=workdir, workers=workers)
    pipe.engine, pipe.ray_address = engine or "local", ray_address
    outcomes = run_pipeline(
        pipe, until=until, from_stage=from_stage, overwrite=overwrite, log=lambda m: click.echo(m, err=True)
    )
    click.echo(format_summary(pipe, outcomes))
