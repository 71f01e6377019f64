"""FER2013: 48x48 gray faces (no cropping), 7 classes, the official splits (train on Training,
test on PrivateTest).  It has no subject ids, so there is no identity network (stage 0) and no
identity term: the identity of a translation is kept by the reconstruction and latent terms."""

from configs import database


def get_config():
  c = database.get_config("fer2013", detector="none", margin=0.0, frames=1,
                          protocol="official", test_split="test")
  c.phi.steps = 0
  c.stage1.identity_weight = 0.0
  return c
