"""pitlane: an ML platform for self-driving RC cars built on DonkeyCar."""

__version__ = "0.1.0"
