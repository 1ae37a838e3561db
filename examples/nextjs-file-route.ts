// app/api/files/[id]/route.ts — a Next.js (App Router) route handler that serves codeinterp files to the browser
// without exposing the API key: it proxies GET /v1/files/{id}/content with the server-side key, streams the bytes,
// and passes Content-Type / Content-Disposition (and caching and range headers) through.
//
// Env (server side only): CODEINTERP_URL (e.g. http://127.0.0.1:8080), CODEINTERP_API_KEY.
// Alternative without a proxy: the `url` codeinterp puts in results is already signed and works in <img src>.
// With the Responses API, the `file_id` of a `container_file_citation` annotation (a chart the answer links, or a
// figure it displayed) is such an id: link the browser to /api/files/<file_id>.
//
// Check who may read the file (e.g. that it belongs to the user's conversation) before proxying.

export const runtime = "nodejs";

const PASS_THROUGH = [
  "content-type", "content-disposition", "content-length", "content-range", "accept-ranges", "etag",
  "last-modified", "x-content-type-options", "content-security-policy",
];

export async function GET(request: Request, context: { params: Promise<{ id: string }> }): Promise<Response> {
  const { id } = await context.params;
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(id)) {
    return Response.json({ error: "bad file id" }, { status: 400 });
  }
  const base = (process.env.CODEINTERP_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const headers: Record<string, string> = { Authorization: `Bearer ${process.env.CODEINTERP_API_KEY ?? ""}` };
  for (const name of ["range", "if-none-match"]) {
    const value = request.headers.get(name);
    if (value) headers[name] = value;
  }
  const upstream = await fetch(`${base}/v1/files/${encodeURIComponent(id)}/content`, {
    headers,
    signal: request.signal, // the browser going away stops the download upstream too
    cache: "no-store",
  });
  if (!upstream.ok && upstream.status !== 304) {
    // 404 for an unknown or expired file; never forward upstream auth errors as-is.
    const status = upstream.status === 404 ? 404 : 502;
    return Response.json({ error: status === 404 ? "file not found" : "file unavailable" }, { status });
  }
  const out = new Headers();
  for (const name of PASS_THROUGH) {
    const value = upstream.headers.get(name);
    if (value) out.set(name, value);
  }
  out.set("cache-control", "private, max-age=300");
  // upstream.body is a ReadableStream: the response streams, nothing is buffered in memory.
  return new Response(upstream.body, { status: upstream.status, headers: out });
}
