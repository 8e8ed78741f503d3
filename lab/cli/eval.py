"""``python -m lab eval perplexity|overlap|judge|harness|reward|list|show|export|summary``: evaluations as stored
background jobs, and every model's numbers beside the human ones.

    python -m lab eval perplexity --model tiny --model run:<id> --wait
    python -m lab eval overlap --model run:<id> --max-rows 50 --wait
    python -m lab eval judge --model run:<id> --model tiny --judge endpoint --endpoint-model gpt-4o-mini --wait
    python -m lab eval judge --print-prompt > judge.txt   # edit, then: --prompt-file judge.txt
    python -m lab eval harness --model tiny --model run:<id> --tasks lab_mc --limit 20 --wait
    python -m lab eval reward --model tiny --model run:<sft id> --reward-model run:<reward id> --wait
    python -m lab eval summary --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.cli import add_json_flag, emit, say
from lab.config import add_arguments, from_arguments
from lab.errors import LabError
from lab.eval.config import HarnessConfig, JudgeConfig, OverlapConfig, PerplexityConfig, RewardEvalConfig

MODEL_HELP = "tiny, run:<id>, a path or a hub id (repeat to compare, e.g. base and tuned)"


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate checkpoints: perplexity, ROUGE/BLEU, LLM-as-judge, lm-eval tasks, reward model, "
        "summary",
        description="Evaluate checkpoints as background jobs kept in the store (one job per model), and set every "
        "model's numbers beside the human results of labeling campaigns.")
    sub = evaluate.add_subparsers(dest="eval_command", metavar="ACTION", required=True)

    ppl = job_parser(sub, "perplexity", PerplexityConfig,
                     "loss and perplexity of models on a dataset version's replies",
                     "Held-out loss and perplexity of each model on the final replies of a dataset version's split, "
                     "with the best and worst fitted examples. One job per model.")
    ppl.set_defaults(handler=run_jobs, kind="perplexity", cls=PerplexityConfig)

    overlap = job_parser(sub, "overlap", OverlapConfig, "ROUGE-L and BLEU of models' answers against the replies",
                         "Each model answers the conversation before each final reply of a dataset version's split; "
                         "its answers are scored against those replies with ROUGE-L and BLEU (corpus and per "
                         "example), with the best and worst examples. One job per model.")
    overlap.set_defaults(handler=run_jobs, kind="overlap", cls=OverlapConfig)

    judge = job_parser(sub, "judge", JudgeConfig, "LLM-as-judge: model A vs model B in both orders, or 1-10 grades",
                       "A judge compares two models' answers to a dataset version's prompts, each pair judged in both "
                       "orders (a verdict counts only when both agree), or grades each model's answers 1-10 "
                       "(--mode single, one job per model). The judge is a local model (scored from its next-token "
                       "probabilities of the verdict) or, with --judge endpoint, an OpenAI-compatible API whose "
                       "address and key come from LAB_JUDGE_BASE_URL / OPENAI_BASE_URL and LAB_JUDGE_API_KEY / "
                       "OPENAI_API_KEY. Verdicts are cached under LAB_HOME/cache/judge.", model_required=False)
    judge.add_argument("--prompt-file", help="the judge prompt template (default: the built-in one for the mode; "
                       "see --print-prompt)")
    judge.add_argument("--print-prompt", action="store_true",
                       help="print the prompt template (the default for --mode, or --prompt-file checked) and exit")
    judge.set_defaults(handler=run_judge)

    harness = job_parser(sub, "harness", HarnessConfig, "lm-evaluation-harness task scores of models",
                         "Scores of each model on lm-evaluation-harness tasks (base vs tuned shows what tuning cost "
                         "elsewhere). Offline tasks ship with the lab; standard ones (mmlu, hellaswag, ...) need the "
                         "Hub for their data. One job per model.", dataset=False)
    harness.set_defaults(handler=run_jobs, kind="harness", cls=HarnessConfig)

    reward = job_parser(sub, "reward", RewardEvalConfig, "mean reward of models' answers, by a reward model",
                        "Each model answers the prompts of a dataset version's split (of any kind: an SFT "
                        "conversation before its final reply, a preference or prompts row's prompt), and a reward "
                        "model (a finished reward-model run, or a sequence classifier with one output) scores every "
                        "answer: the mean reward per model, each prompt's score kept (eval show ID --json), and the "
                        "dataset's own replies scored beside them where it has some. One job per model.",
                        dataset_help="a dataset version of any kind whose prompts are answered (default: sample:sft)")
    reward.set_defaults(handler=run_jobs, kind="reward", cls=RewardEvalConfig)

    lst = sub.add_parser("list", help="all evaluations, newest first", description="All evaluations, newest first.")
    add_json_flag(lst)
    lst.set_defaults(handler=run_list)
    show = sub.add_parser("show", help="one evaluation with its results", description="One evaluation, in full.")
    show.add_argument("id")
    add_json_flag(show)
    show.set_defaults(handler=run_show)
    export = sub.add_parser("export", help="all evaluations as CSV",
                            description="All evaluations as CSV on stdout: one line per job with its kind's headline "
                            "numbers.")
    export.set_defaults(handler=run_export)
    summary = sub.add_parser("summary", help="per model: automatic numbers beside the human win rate",
                             description="Per model, the latest perplexity, ROUGE-L, BLEU, judge win rate and grade, "
                             "lm-eval scores, and the human win rate and Bradley-Terry rating of a labeling campaign.")
    summary.add_argument("--campaign", help="campaign id or name for the human results (default: the newest with "
                         "decided votes)")
    add_json_flag(summary)
    summary.set_defaults(handler=run_summary)


def job_parser(sub: argparse._SubParsersAction, name: str, cls: type, help: str, description: str, *,
               dataset: bool = True, model_required: bool = True,
               dataset_help: str = "an SFT dataset version (default: sample:sft)") -> argparse.ArgumentParser:
    """A job command: --model (repeatable), --dataset, the config's own flags, --wait and --json."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("--model", action="append", required=model_required, help=MODEL_HELP)
    if dataset:
        parser.add_argument("--dataset", default="sample:sft", help=dataset_help)
    add_arguments(parser, cls)
    parser.add_argument("--wait", action="store_true", help="wait for the results")
    add_json_flag(parser)
    return parser


def job_lines(jobs: list) -> str:
    """One line per job, its models by name."""
    from lab.eval.jobs import model_names

    names = model_names(jobs)
    return "\n".join(f"{job.id}  {job.status:<9} {job.kind:<10} {job.named_subject(names)}  on {job.dataset}"
                     + (f":{job.config['split']}" if job.config.get("split") else "") + f"  {job.headline_text}"
                     for job in jobs)


def start(kind: str, models: list[str], dataset: str, settings: dict, args: argparse.Namespace) -> int:
    from lab.eval import jobs

    created = [jobs.create_eval(kind, m, dataset, **settings) for m in models]
    names = jobs.model_names(created)
    for job in created:
        say(f"queued {job.id}: {kind} of {job.named_subject(names)}" + (f" on {job.dataset}" if dataset else ""))
    if args.wait:
        created = [jobs.wait(job.id) for job in created]
    emit(args, [j.summary() for j in created], lambda: print(job_lines(created)))
    return 0 if not args.wait or all(j.status == "succeeded" for j in created) else 1


def settings_of(cls: type, args: argparse.Namespace, **fixed) -> dict:
    from dataclasses import asdict

    return asdict(from_arguments(cls, args, **fixed))


def run_jobs(args: argparse.Namespace) -> int:
    return start(args.kind, args.model, getattr(args, "dataset", ""), settings_of(args.cls, args), args)


def run_judge(args: argparse.Namespace) -> int:
    from lab.eval.judge import template_of

    prompt = read_prompt(args.prompt_file)
    cfg = from_arguments(JudgeConfig, args, prompt=prompt)
    try:
        template = template_of(cfg)
    except LabError as err:
        raise LabError(f"{args.prompt_file}: {err}" if args.prompt_file else str(err)) from None
    if args.print_prompt:
        emit(args, {"mode": cfg.mode, "prompt": template}, lambda: print(template))
        return 0
    models = args.model or []
    if cfg.mode == "pairwise":
        if len(models) != 2:
            raise LabError(f"Pairwise judging takes two models, --model A --model B (got {len(models)}); use "
                           "--mode single to grade models one by one.")
        return start("judge", models[:1], args.dataset, settings_of(JudgeConfig, args, prompt=prompt,
                                                                    model_b=models[1]), args)
    if not models:
        raise LabError("Name at least one model to grade: --model tiny, run:<id>, a path or a hub id.")
    return start("judge", models, args.dataset, settings_of(JudgeConfig, args, prompt=prompt), args)


def read_prompt(path: str | None) -> str:
    if not path:
        return ""
    if not Path(path).is_file():
        raise LabError(f"No prompt file {path}; write one from: python -m lab eval judge --print-prompt > {path}")
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LabError(f"The prompt file {path} is not UTF-8 text; write one from: python -m lab eval judge "
                       f"--print-prompt > {path}") from None


def run_list(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    found = jobs.list_evals()
    emit(args, [j.summary() for j in found], lambda: print(job_lines(found) or "no evaluations yet"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    job = jobs.get_eval(args.id)
    emit(args, job.summary(), lambda: print(job_lines([job])))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from lab.eval import jobs

    print(jobs.to_csv(jobs.list_evals()), end="")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from lab.eval.summary import summary

    document = summary(campaign_id=args.campaign)
    emit(args, document, lambda: print(summary_text(document)))
    return 0


def summary_text(document: dict) -> str:
    def number(value, spec: str) -> str:
        return format(value, spec) if value is not None else format("-", ">" + spec.split(".")[0])

    campaign = document["campaign"]
    lines = [f"human results from campaign {campaign['name']} ({campaign['id']})" if campaign
             else "no labeling campaign with votes yet",
             f"{'model':<28} {'ppl':>10} {'ROUGE-L':>8} {'BLEU':>6} {'judge':>6} {'grade':>6} {'reward':>7} "
             f"{'human':>6} {'BT':>6}  lm-eval"]
    for row in document["models"]:
        tasks = " ".join(f"{t} {v:.3f}" for t, v in row["harness"].items())
        lines.append(f"{row['name'][:28]:<28} {number(row['perplexity'], '10.2f')} {number(row['rouge_l'], '8.3f')} "
                     f"{number(row['bleu'], '6.1f')} {number(row['judge_win_rate'], '6.0%')} "
                     f"{number(row['judge_grade'], '6.2f')} {number(row['reward'], '7.3f')} "
                     f"{number(row['human_win_rate'], '6.0%')} "
                     f"{number(row['human_rating'], '6.0f')}  {tasks}")
    return "\n".join(lines)
