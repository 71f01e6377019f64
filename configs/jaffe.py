"""JAFFE: 213 images of 10 subjects, 7 classes (6 + neutral), 48 px gray, 10 folds by subject
(one subject per fold: leave-one-subject-out)."""

from configs import database


def get_config():
  return database.get_config("jaffe", frames=1, include_neutral=True)
