"""``lmbench generate``: continue a prompt with a saved model (.npz or .arpa) and print the text.

    lmbench generate runs/<run-id>/model.npz "ROMEO:" --top-p 0.95 --max-new-tokens 200 --seed 1
    lmbench generate brown5.arpa --prompt-file prompt.txt --beam 5 --no-repeat-ngram 3

Sampling flags become a ``SamplingConfig`` (applied in its fixed order: penalties, temperature,
top-k, top-p, min-p); ``--temperature 0`` is greedy. ``--beam N`` runs beam search instead,
ranking by log-probability after the penalty flags only; ``--best-of N`` draws N samples with
the sampling flags and prints the best by ``--rank-by``. Every bad flag is a one-line error and
exit status 2 (through ``lmbench.cli.main.main``). ``add_commands`` adds the subcommand to the CLI's
subparsers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmbench.core.errors import LmbenchError
from lmbench.core.limits import MAX_BEAM_WIDTH, MAX_BEST_OF, MAX_NEW_TOKENS, check_at_most

SAMPLING_FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
                  "min_p": "--min-p"}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate`` to ``lmbench``'s subcommands."""
    gen = subparsers.add_parser("generate", help="continue a prompt with a saved model",
                                description=__doc__.splitlines()[0])
    gen.add_argument("model", help="model file written by --save-models / model.save, or .arpa")
    gen.add_argument("prompt", nargs="?", help="prompt text (default: empty, i.e. from the start)")
    gen.add_argument("--prompt-file", help="read the prompt from this UTF-8 file instead")
    gen.add_argument("--max-new-tokens", type=int, default=100,
                     help=f"tokens to generate (at most {MAX_NEW_TOKENS:,})")
    gen.add_argument("--temperature", type=float, help="> 0 scales the logits; 0 is greedy")
    gen.add_argument("--top-k", type=int, help="keep the k most likely tokens")
    gen.add_argument("--top-p", type=float, help="nucleus mass in (0, 1]")
    gen.add_argument("--min-p", type=float, help="keep p >= min_p * p_max, in [0, 1]")
    gen.add_argument("--repetition-penalty", type=float, help="CTRL penalty, > 1 discourages")
    gen.add_argument("--no-repeat-ngram", type=int, help="ban repeating n-grams of this size")
    gen.add_argument("--beam", type=int,
                     help=f"beam search with this many beams (at most {MAX_BEAM_WIDTH})")
    gen.add_argument("--length-penalty", type=float, default=1.0,
                     help="beam search: rank by sum ln p / length^alpha")
    gen.add_argument("--best-of", type=int, help="draw N samples, print the best by --rank-by "
                     f"(at most {MAX_BEST_OF})")
    gen.add_argument("--rank-by", choices=("mean-logprob", "logprob"), default="mean-logprob",
                     help="best-of-N ranking: mean or total log-probability under the model")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same text")
    gen.add_argument("--echo", action="store_true", help="print the prompt before the text")
    gen.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    gen.set_defaults(handler=generate_command)


def _sampling_config(args: argparse.Namespace):
    from lmbench.inference.sampling import SamplingConfig

    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "min_p": args.min_p, "repetition_penalty": args.repetition_penalty,
               "no_repeat_ngram_size": args.no_repeat_ngram}
    return SamplingConfig(**{k: v for k, v in options.items() if v is not None})


def _check(args: argparse.Namespace) -> None:
    """Flag combinations, before the model is loaded."""
    if args.prompt is not None and args.prompt_file:
        raise LmbenchError("give the prompt as an argument or with --prompt-file, not both")
    if args.max_new_tokens < 0:
        raise LmbenchError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    check_at_most(args.max_new_tokens, MAX_NEW_TOKENS, "--max-new-tokens")
    for flag, value, limit in (("--beam", args.beam, MAX_BEAM_WIDTH),
                               ("--best-of", args.best_of, MAX_BEST_OF)):
        if value is not None and value < 1:
            raise LmbenchError(f"{flag} must be >= 1, got {value}")
        if value is not None:
            check_at_most(value, limit, flag)
    if args.beam is not None:
        if args.best_of is not None:
            raise LmbenchError("--beam and --best-of are different decoders; choose one")
        given = [flag for name, flag in SAMPLING_FLAGS.items() if getattr(args, name) is not None]
        if given:
            raise LmbenchError(f"--beam ranks by log-probability; {', '.join(given)} only apply "
                               "to sampling (--repetition-penalty and --no-repeat-ngram do apply)")


def _read_prompt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LmbenchError(f"{path}: prompt file not found") from None
    except UnicodeDecodeError:
        raise LmbenchError(f"{path}: the prompt file is not UTF-8 text") from None
    except OSError as error:
        raise LmbenchError(f"{path}: cannot read the prompt file ({error.strerror})") from None


def _prompt_ids(model, text: str) -> list[int]:
    """The prompt's ids. A word tokenizer ends every line with the boundary ``</s>``; unless the
    text itself ends with a line break, drop that last one, so generation continues the
    sentence instead of starting a new one."""
    ids = model.tokenizer.encode(text)
    if ids and ids[-1] == model.tokenizer.boundary_id and not text.endswith("\n"):
        ids = ids[:-1]
    return ids


def generate_command(args: argparse.Namespace) -> None:
    from lmbench.inference.decoding import beam_search, best_of_n, mean_logprob, sequence_logprob
    from lmbench.inference.sampling import build_sampler, generate
    from lmbench.models import load_model

    _check(args)
    config = _sampling_config(args)  # validates the values (one-line LmbenchError)
    text = _read_prompt(Path(args.prompt_file)) if args.prompt_file else (args.prompt or "")
    model = load_model(args.model).to(args.device)
    prompt = _prompt_ids(model, text)
    if args.beam is not None:
        ids = beam_search(model, prompt, args.max_new_tokens, args.beam, args.length_penalty,
                          processors=build_sampler(config).processors).ids
    elif args.best_of is not None:
        scorer = mean_logprob if args.rank_by == "mean-logprob" else sequence_logprob
        ids = best_of_n(model, prompt, args.best_of, scorer, max_new_tokens=args.max_new_tokens,
                        sampler=config, seed=args.seed).ids
    else:
        ids = generate(model, prompt, args.max_new_tokens, seed=args.seed, sampler=config)
    shown = model.tokenizer.decode(ids)
    if args.echo:
        shown = model.tokenizer.decode(prompt) + shown
    print(shown)
