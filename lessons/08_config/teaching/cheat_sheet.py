app.config['DEBUG'] = True
app.config.from_envvar('APP_SETTINGS')
