// Formatting for display: times, statuses, terminal text.

const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;

/** Terminal output made readable: ANSI escape sequences removed, CR-overwritten lines kept last. */
export function terminalText(text) {
  return String(text ?? '').replace(ANSI, '').replace(/[^\n]*\r(?!\n)/g, '');
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

/** "3 min ago" for an RFC 3339 time. */
export function relativeTime(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '';
  const seconds = Math.round((now - then) / 1000);
  if (seconds < 10) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

export function absoluteTime(iso) {
  const then = new Date(iso);
  return Number.isNaN(then.getTime()) ? '' : then.toLocaleString();
}

/** The badge of a session: its status, and what else matters for that status. */
export function statusLabel(session) {
  const status = session.status;
  if (status === 'active' && session.agent_status) return `active · ${session.agent_status}`;
  if (status === 'exited') {
    const code = session.exit_code === null || session.exit_code === undefined ? '' : ` ${session.exit_code}`;
    const reason = session.exit_reason ? ` · ${session.exit_reason.replaceAll('_', ' ')}` : '';
    return `exited${code}${reason}`;
  }
  if (status === 'failed' && session.exit_reason) return `failed · ${session.exit_reason.replaceAll('_', ' ')}`;
  return status;
}

export function isLive(session) {
  return session && (session.status === 'starting' || session.status === 'active');
}
