"""``metdata serve``: a run's model behind a JSON API and a Dash dashboard, under gunicorn.

``state`` holds what one worker process serves (the model, loaded after the fork, and the
validation side of the run's split); ``api`` the JSON routes; ``dashboard`` the Dash layout
and callbacks; ``server`` the gunicorn application.
"""
