/* Server-sent events over fetch (EventSource can't POST): calls onData(payload) with the text
   after "data:" of each event, as the events arrive. Shared by `lmlab serve`'s chat page
   (inlined) and lmlab studio's chat and arena pages. */
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {           // one event per blank line
      const line = buf.slice(0, cut).trim(); buf = buf.slice(cut + 2);
      if (line.startsWith("data:")) onData(line.slice(5).trim());
    }
  }
}
