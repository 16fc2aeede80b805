"""Tasks: questions with graded answers (synthetic reasoning problems, corpus cloze and
multiple choice, user tasks), prompting modes and the task evaluator."""
