"""The Flask extensions, bound to the domain's own declarative base."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from casework.db import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
