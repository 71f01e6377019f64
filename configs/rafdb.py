"""RAF-DB basic: the aligned 100x100 faces resized to 48 px gray (no detection), 7 classes, the
official train/test lists.  No subject ids: no identity network and no identity term."""

from configs import database


def get_config():
  return database.get_config("rafdb", subjects=False, detector="none", margin=0.0, frames=1,
                             protocol="official", test_split="test")
