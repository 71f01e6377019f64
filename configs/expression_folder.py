"""Any class-per-folder tree of face images, e.g. CK+48; the folder is the config argument:

  python -m jfesgan.main --config configs/expression_folder.py:/path/to/CK+48 --workdir runs/ck48

Defaults suit CK+48 (48x48 gray crops named ``S010_004_00000017.png``): its 7 class folders, the
subject from the file name, no detection, 10 folds by subject.  Other trees: set
``--config.data.classes`` and ``--config.data.subject_regex`` (its first group is the subject).
Training and cross-validation hold out subjects, so they need subject ids: with
``subject_regex=''`` the dataset is built with ``subject`` -1 and a run stops with an error saying
so.
"""

from configs import database


def get_config(folder: str = ""):
  return database.get_config(
      "expression_folder", manual_dir=folder, detector="none", margin=0.0, frames=1,
      classes=("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
      subject_regex=r"^(S\d+)_")
