"""Start the fine-tuning lab's web app: ``python app.py [--host H] [--port P]``."""

from lab.ui.app import main

if __name__ == "__main__":
    main()
