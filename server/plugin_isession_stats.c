/*
 * api->session_stats (ABI 1.2): how much waits in an internal session, for
 * a plugin's own metrics (a bridge's per-link queue gauges). Read on the
 * home worker, which alone changes the session's queues.
 */
#include "plugin.h"
#include "plugin_isession.h"

#include <string.h>

#include "session.h"

int
plugin_session_stats(midge_session *ms, struct midge_session_stats *out)
{
    struct midge_session_stats st;
    const struct session *s;
    size_t n;

    if (out == NULL || out->size == 0) {
        return -MIDGE_EINVAL;
    }
    if (!isession_on_home(ms) || (s = ms->vconn.session) == NULL) {
        return -MIDGE_ESTATE;
    }
    memset(&st, 0, sizeof(st));
    st.queued = s->queue.count;
    st.queued_bytes = s->queue_bytes;
    st.inflight = s->inflight.count;
    /* An older plugin's smaller struct gets the fields it knows. */
    n = out->size < sizeof(st) ? out->size : sizeof(st);
    st.size = out->size;
    memcpy(out, &st, n);
    return 0;
}
