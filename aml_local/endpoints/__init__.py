"""The endpoint nouns: online/ (online-endpoint, online-deployment) and batch/ (batch-endpoint, batch-deployment),
and router/, the front end of an online endpoint, apart from the verbs that drive it."""
