"""User tasks from JSONL and TOML: a valid task loads and runs; each mistake is one line that
names the file and the field."""

from __future__ import annotations

import json

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.tasks.catalog import load_task
from lmbench.tasks.prompting import PromptConfig, preamble

GOOD = """name = "capitals"
train = "train.jsonl"
test = "test.jsonl"
template = "Q: What is the capital of {country}?\\nA:"
target = "capital"
metric = "exact_match"
stop = ["\\n"]
flexible_regex = "[A-Z][a-z]+"
"""
DOCS = [{"country": "France", "capital": "Paris"}, {"country": "Peru", "capital": "Lima"},
        {"country": "Japan", "capital": "Tokyo"}]


def write_task(folder, toml: str = GOOD, docs=DOCS):
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    path = folder / "capitals.toml"
    path.write_text(toml)
    return path


def test_a_user_task_loads_with_its_fields(tmp_path):
    task = load_task(write_task(tmp_path))
    assert task.name == "capitals" and task.kind == "generate" and task.stop == ("\n",)
    assert task.prompt(DOCS[0]) == "Q: What is the capital of France?\nA:"
    assert task.target_text(DOCS[0]) == " Paris" and len(task.splits["test"]) == 3
    assert preamble(task, PromptConfig(num_fewshot=2)).count("Q: What is the capital") == 2


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('target = "capital"\n', ""), r"capitals\.toml: missing field 'target'"),
    (lambda t: t.replace("{country}", "{nation}"),
     r"capitals\.toml: field 'template' names 'nation', which train document 0 does not have"),
    (lambda t: t.replace('"[A-Z][a-z]+"', '"[A-Z"'),
     r"capitals\.toml: field 'flexible_regex': the regular expression '\[A-Z' does not compile"),
    (lambda t: t.replace('stop = ["\\n"]', 'stop = ["\\n", ""]'),
     r"capitals\.toml: field 'stop' has an empty stop string"),
    (lambda t: t + 'stpo = ["x"]\n', r"capitals\.toml: unknown field 'stpo' \(did you mean 'stop'"),
    (lambda t: t.replace('"exact_match"', '"bleu"'), r"capitals\.toml: field 'metric' must be"),
    (lambda t: t.replace('target = "capital"', "target = 3"),
     r"capitals\.toml: field 'target' must be a string"),
    (lambda t: t.replace('"test.jsonl"', '"nope.jsonl"'),
     r"capitals\.toml: field 'test': file .*nope\.jsonl' not found"),
    (lambda t: t + "[broken\n", r"capitals\.toml: not valid TOML"),
])
def test_mistakes_are_one_line_naming_file_and_field(tmp_path, change, message):
    path = write_task(tmp_path, change(GOOD))
    with pytest.raises(LmbenchError, match=message) as error:
        load_task(path)
    assert "\n" not in str(error.value)


def test_k_larger_than_the_train_split_names_the_file(tmp_path):
    task = load_task(write_task(tmp_path))
    with pytest.raises(LmbenchError, match=r"capitals\.toml: num_fewshot is 4, more than the 3 "
                       r"documents of the train split \(field 'train'\)"):
        preamble(task, PromptConfig(num_fewshot=4))


def test_bad_jsonl_lines_are_named_by_number(tmp_path):
    path = write_task(tmp_path)
    (tmp_path / "test.jsonl").write_text(json.dumps(DOCS[0]) + "\n[1, 2]\n")
    with pytest.raises(LmbenchError, match=r"test\.jsonl:2: a document must be a JSON object"):
        load_task(path)
    (tmp_path / "test.jsonl").write_text("{not json\n")
    with pytest.raises(LmbenchError, match=r"test\.jsonl:1: not JSON"):
        load_task(path)


def test_multiple_choice_and_rolling_user_tasks(tmp_path):
    choice_docs = [{"q": "2 + 2", "options": ["4", "5"], "gold": 0}] * 3
    toml = ('name = "mc"\ntrain = "train.jsonl"\ntest = "test.jsonl"\ntemplate = "{q} ="\n'
            'target = "gold"\nmetric = "acc"\nchoices = "options"\n')
    task = load_task(write_task(tmp_path, toml, choice_docs))
    assert task.kind == "multiple_choice" and task.target_text(choice_docs[0]) == " 4"
    bad = [{"q": "2 + 2", "options": ["4", "5"], "gold": 2}]
    with pytest.raises(LmbenchError, match=r"field 'gold' must be the index of the gold choice"):
        load_task(write_task(tmp_path, toml, bad))
    rolling = ('name = "text"\ntest = "test.jsonl"\ntemplate = ""\ntarget = "country"\n'
               'metric = "perplexity"\n')
    assert load_task(write_task(tmp_path, rolling)).kind == "rolling"


def test_shipped_tasks_and_their_options(data_dir):
    longer = load_task("addition", n_digits=4, n_train=5, n_test=5)
    assert longer.name == "addition[n_digits=4]"
    assert load_task("addition", n_train=5, n_test=5).name == "addition"
    assert all(len(d["question"].split()[2]) == 4 for d in longer.splits["test"])
    train_questions = {d["question"] for d in longer.splits["train"]}
    assert not train_questions & {d["question"] for d in longer.splits["test"]}
    with pytest.raises(LmbenchError, match="unexpected keyword"):
        load_task("addition", n_words=3)
    with pytest.raises(LmbenchError, match="unknown task 'adition'"):
        load_task("adition")
    letters = load_task("last-letter", data_dir, n_train=3, n_test=3)
    assert letters.splits["test"][0]["answer"].isalpha()
    cloze = load_task("cloze", data_dir, n_train=5, n_test=5)
    doc = cloze.splits["test"][0]
    assert doc["answer"].isalpha() and len(doc["context"].split()) >= 6
    choice = load_task("next-sentence", data_dir, n_train=5, n_test=5)
    doc = choice.splits["test"][0]
    assert len(doc["choices"]) == 4 and 0 <= doc["label"] < 4
    assert load_task("cloze", data_dir, n_train=5, n_test=5) == cloze  # deterministic
