"""MMI: 6 classes, 3 peak frames (around the middle of each onset-apex-offset session), 48 px
gray, 10 folds by subject."""

from configs import database


def get_config():
  return database.get_config("mmi", frames=3)
