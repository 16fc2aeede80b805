"""``lmbench generate``: continue a prompt with a saved model (.npz or .arpa) and print the text.

    lmbench generate runs/<run-id>/model.npz "ROMEO:" --top-p 0.95 --max-new-tokens 200 --seed 1
    lmbench generate brown5.arpa --prompt-file prompt.txt --beam 5 --no-repeat-ngram 3
    lmbench generate brown5.arpa "the jury" --temperature 0 --ban-unk --stop . --echo

Sampling flags become a ``SamplingConfig`` (applied in its fixed order: bans and penalties,
temperature, top-k, top-p, min-p); ``--temperature 0`` is greedy. ``--beam N`` runs beam search
instead, ranking by log-probability after the ban and penalty flags only; ``--best-of N`` draws
N samples with the sampling flags and prints the best by ``--rank-by``. ``--ban-unk`` and
``--ban WORD`` are HF's ``bad_words_ids`` (a word of several tokens is banned as a sequence);
``--stop TEXT`` ends the text before the first TEXT generated (HF's ``stop_strings``);
``--num-return-sequences N`` prints N samples (seeds ``--seed``, ``--seed`` + 1, ...) or the N
best beams, each under a ``== i/N ==`` line. ``--echo`` prints the prompt exactly as given,
not as the tokenizer reads it. Every bad flag is a one-line error and exit status 2 (through
``lmbench.cli.main.main``). ``add_commands`` adds the subcommand to the CLI's subparsers.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from lmbench.cli import MODEL_REFERENCE, RESULTS_HELP
from lmbench.core.errors import LmbenchError
from lmbench.core.limits import MAX_BEAM_WIDTH, MAX_BEST_OF, MAX_NEW_TOKENS, check_at_most

SAMPLING_FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
                  "min_p": "--min-p"}


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate`` to ``lmbench``'s subcommands."""
    gen = subparsers.add_parser("generate", help="continue a prompt with a saved model",
                                description="Continue a prompt with a saved model (.npz or "
                                "an .arpa file) and print the text.")
    # The defaults of the sampling flags are SamplingConfig's (tests/cli/test_generation.py
    # checks they agree); they are written out so that --help needs no torch import.
    gen.add_argument("model", help=MODEL_REFERENCE)
    gen.add_argument("--results", help=RESULTS_HELP)
    gen.add_argument("prompt", nargs="?", help="prompt text (default: empty, i.e. from the start)")
    gen.add_argument("--prompt-file", metavar="FILE",
                     help="read the prompt from this UTF-8 file instead (default: none)")
    gen.add_argument("--max-new-tokens", type=int, default=100, metavar="N",
                     help=f"tokens to generate, at most {MAX_NEW_TOKENS:,} (default: %(default)s)")
    gen.add_argument("--temperature", type=float,
                     help="> 0 scales the logits; 0 is greedy (default: 1.0, the model's own "
                     "distribution)")
    gen.add_argument("--top-k", type=int, metavar="K",
                     help="keep the k most likely tokens (default: off)")
    gen.add_argument("--top-p", type=float, metavar="P",
                     help="nucleus mass in (0, 1] (default: 1.0, off)")
    gen.add_argument("--min-p", type=float, metavar="P",
                     help="keep p >= min_p * p_max, in [0, 1] (default: 0.0, off)")
    gen.add_argument("--repetition-penalty", type=float, metavar="R",
                     help="CTRL penalty, > 1 discourages repeats (default: 1.0, off)")
    gen.add_argument("--no-repeat-ngram", type=int, metavar="N",
                     help="ban repeating n-grams of this size (default: 0, off)")
    gen.add_argument("--ban-unk", action="store_true",
                     help="never generate the tokenizer's <unk> (default: off)")
    gen.add_argument("--ban", action="append", default=[], metavar="WORD",
                     help="never generate WORD (a token such as </s>, or a text encoded as the "
                     "tokenizer encodes it); repeatable (default: none)")
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT",
                     help="stop once TEXT is generated and print the text before it; "
                     "repeatable (default: none)")
    gen.add_argument("--num-return-sequences", type=int, default=1, metavar="N",
                     help=f"print N samples, at most {MAX_BEST_OF} (seeds --seed, --seed + 1, ...) "
                     "or, with --beam, the N best beams (default: %(default)s)")
    gen.add_argument("--beam", type=int, metavar="N",
                     help=f"beam search with this many beams, at most {MAX_BEAM_WIDTH} "
                     "(default: off, sampling)")
    gen.add_argument("--length-penalty", type=float, default=1.0, metavar="ALPHA",
                     help="beam search: rank by sum ln p / length^alpha (default: %(default)s)")
    gen.add_argument("--best-of", type=int, metavar="N",
                     help=f"draw N samples, at most {MAX_BEST_OF}, print the best by --rank-by "
                     "(default: off)")
    gen.add_argument("--rank-by", choices=("mean-logprob", "logprob"), default="mean-logprob",
                     help="best-of-N ranking: mean or total log-probability under the model "
                     "(default: %(default)s)")
    gen.add_argument("--seed", type=int, default=0,
                     help="same seed, same text (default: %(default)s)")
    gen.add_argument("--echo", action="store_true",
                     help="print the prompt, exactly as given, before the text (default: off)")
    gen.add_argument("--device", default="auto",
                     help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
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
                               ("--best-of", args.best_of, MAX_BEST_OF),
                               ("--num-return-sequences", args.num_return_sequences, MAX_BEST_OF)):
        if value is not None and value < 1:
            raise LmbenchError(f"{flag} must be >= 1, got {value}")
        if value is not None:
            check_at_most(value, limit, flag)
    if args.num_return_sequences > 1 and args.best_of is not None:
        raise LmbenchError("--best-of prints one text; --num-return-sequences applies to "
                           "sampling and --beam")
    if args.beam is not None and args.num_return_sequences > args.beam:
        raise LmbenchError(f"--num-return-sequences {args.num_return_sequences} needs at least "
                           f"as many beams, got --beam {args.beam}")
    if any(not stop for stop in args.stop):
        raise LmbenchError("--stop needs a non-empty text")
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


def _echoed(model, text: str, prompt: list[int], continuation: str) -> str:
    """The prompt exactly as given, then the continuation. The tokenizer's reading of the
    prompt decides only the whitespace between them: a word tokenizer decodes ``the cat`` as
    ``the cat `` (a space after every word), so a prompt not ending in whitespace gets the
    whitespace the decoded prompt ends with."""
    decoded = model.tokenizer.decode(prompt)
    gap = decoded[len(decoded.rstrip()):] if text and not text[-1].isspace() else ""
    return text + gap + continuation


def generate_command(args: argparse.Namespace) -> None:
    from lmbench.inference.decoding import (
        beam_search_sequences,
        best_of_n,
        mean_logprob,
        sample_sequences,
        sequence_logprob,
    )
    from lmbench.inference.sampling import bad_words_ids, build_sampler
    from lmbench.models import load_model
    from lmbench.storage.references import resolve_model

    _check(args)  # the flags first: a mistake there costs no model loading
    config = _sampling_config(args)  # validates the values (one-line LmbenchError)
    text = _read_prompt(Path(args.prompt_file)) if args.prompt_file else (args.prompt or "")
    model = load_model(resolve_model(args.model, args.results).path).to(args.device)
    prompt = _prompt_ids(model, text)
    if args.ban_unk or args.ban:
        config = replace(config, bad_words_ids=bad_words_ids(model.tokenizer, args.ban,
                                                             ban_unk=args.ban_unk))
    n, stops = args.num_return_sequences, tuple(args.stop)
    if args.beam is not None:
        found = beam_search_sequences(model, prompt, args.max_new_tokens, args.beam, n,
                                      args.length_penalty,
                                      processors=build_sampler(config).processors,
                                      stop_strings=stops)
        labels = [f"beam score {c.score:.4f}" for c in found]
    elif args.best_of is not None:
        scorer = mean_logprob if args.rank_by == "mean-logprob" else sequence_logprob
        found = [best_of_n(model, prompt, args.best_of, scorer,
                           max_new_tokens=args.max_new_tokens, sampler=config, seed=args.seed,
                           stop_strings=stops)]
        labels = [""]
    else:
        found = sample_sequences(model, prompt, n, max_new_tokens=args.max_new_tokens,
                                 sampler=config, seed=args.seed, stop_strings=stops)
        labels = [f"seed {args.seed + i}" for i in range(n)]
    for i, (candidate, label) in enumerate(zip(found, labels)):
        if len(found) > 1:
            print(f"== {i + 1}/{len(found)} ({label}) ==")
        print(_echoed(model, text, prompt, candidate.text) if args.echo else candidate.text)
