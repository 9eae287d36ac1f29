// LangGraph's JavaScript SDK drives the `genevolve` assistant the way a chat front-end would:
// a messages input, a streamed run, the review interrupt in LangChain's HITL shape, a resume
// with a decision, then the final message and program. Prints the transcript as JSON.
//
//   node drive_genevolve.mjs SERVER_URL OUTPUT_DIR
import { Client } from "@langchain/langgraph-sdk";

const [url, outputDir] = process.argv.slice(2);
if (!url || !outputDir) {
  console.error("usage: node drive_genevolve.mjs SERVER_URL OUTPUT_DIR");
  process.exit(2);
}

const client = new Client({ apiUrl: url });
const transcript = [];
const sent = (what, body) => transcript.push({ direction: "sent", what, body });
const received = (what, body) => transcript.push({ direction: "received", what, body });

const [assistant] = await client.assistants.search({ graphId: "genevolve" });
received("assistant", { assistant_id: assistant.assistant_id, graph_id: assistant.graph_id });

const thread = await client.threads.create();
const context = { policy: "rules", review_before_render: true, renderer: "preview", output_dir: outputDir };
const input = { messages: [{ type: "human", content: 'A poster of the Eiffel Tower at dusk, title "PARIS"' }] };
sent("runs.stream", { input, context, streamMode: ["updates"] });

const streamedNodes = [];
let interrupt = null;
for await (const chunk of client.runs.stream(thread.thread_id, assistant.assistant_id, { input, context, streamMode: ["updates"] })) {
  if (chunk.event === "error") throw new Error(`run failed: ${JSON.stringify(chunk.data)}`);
  if (chunk.event !== "updates") continue;
  for (const [node, update] of Object.entries(chunk.data)) {
    streamedNodes.push(node);
    if (node === "__interrupt__") interrupt = update[0];
  }
}
received("streamed nodes", streamedNodes);
if (!interrupt) throw new Error("the run did not pause for review");
const request = interrupt.value;
received("interrupt", { action_requests: request.action_requests, review_configs: request.review_configs });

const resume = { decisions: [{ type: "approve" }] };
sent("runs.stream (resume)", { command: { resume }, context, streamMode: ["values"] });
let finalValues = null;
for await (const chunk of client.runs.stream(thread.thread_id, assistant.assistant_id, { command: { resume }, context, streamMode: ["values"] })) {
  if (chunk.event === "error") throw new Error(`resume failed: ${JSON.stringify(chunk.data)}`);
  if (chunk.event === "values") finalValues = chunk.data;
}
const state = await client.threads.getState(thread.thread_id);
const last = state.values.messages[state.values.messages.length - 1];
received("final", {
  termination: state.values.termination,
  review: state.values.review,
  program: state.values.program,
  render: { success: state.values.render?.success, output_path: state.values.render?.output_path },
  last_message: { type: last.type, content: last.content },
  streamed_final_termination: finalValues?.termination,
});
console.log(JSON.stringify({ thread_id: thread.thread_id, transcript }, null, 2));
