"""CK+: 7 classes (anger, contempt, disgust, fear, happy, sadness, surprise), the last 3 frames
of the 327 labelled sequences (118 subjects), faces cropped to 48 px gray, 10 folds by subject.

  jfesgan crossval --config configs/ckplus.py --config.data.manual_dir=/path/to/CK+ \
      --workdir runs/ckplus
"""

from configs import database


def get_config():
  return database.get_config("ckplus", frames=3, include_neutral=False)
