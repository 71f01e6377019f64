"""FER2013: 48x48 gray faces (no cropping), 7 classes, the official splits (train on Training,
test on PrivateTest).  No subject ids: no identity network and no identity term."""

from configs import database


def get_config():
  return database.get_config("fer2013", subjects=False, detector="none", margin=0.0, frames=1,
                             protocol="official", test_split="test")
