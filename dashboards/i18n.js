// Vietnamese and English: words, and numbers, dates and units formatted the way each language writes them.

const WORDS = {
  vi: {
    title: "Trung tâm Điều hành IOC · Đà Nẵng",
    ward_title: "Phòng điều hành",
    login: "Đăng nhập", username: "Tên đăng nhập", password: "Mật khẩu", logout: "Đăng xuất",
    wrong_login: "Sai tên đăng nhập hoặc mật khẩu",
    live: "Trực tuyến", connecting: "Đang kết nối…", reconnecting: "Mất kết nối, đang kết nối lại…",
    degraded: "Trực tuyến, số liệu đo đến chậm", stale: "Máy chủ chưa phản hồi…",
    alerts: "Cảnh báo", no_alerts: "Không có cảnh báo", acknowledge: "Tiếp nhận", resolve: "Xử lý xong",
    open: "Mới", acknowledged: "Đã tiếp nhận", resolved: "Đã xử lý",
    critical: "Khẩn cấp", major: "Nghiêm trọng", minor: "Nhẹ", info: "Thông tin",
    kpi_open: "Cảnh báo đang mở", kpi_ack: "Trung vị tiếp nhận hôm nay", kpi_air: "PM2.5 cao nhất",
    kpi_water: "Mực nước cao nhất", kpi_traffic: "Phương tiện / giờ",
    response_week: "Thời gian phản hồi (7 ngày)", ack_median: "Tiếp nhận (trung vị)", resolve_median: "Xử lý (trung vị)",
    history: "Lịch sử 24 giờ", close: "Đóng", counts: "Đếm", snapshot: "Ảnh chụp", sensors: "cảm biến", units: "đơn vị",
    ago: "trước", just_now: "vừa xong", new_alert: "Cảnh báo mới",
    tickets: "Phản ánh của người dân", no_tickets: "Không có phản ánh đang mở", accept: "Nhận xử lý",
    start: "Bắt đầu xử lý", received: "Mới", accepted: "Đã nhận", in_progress: "Đang xử lý",
    note_resolve: "Kết quả xử lý:", hours_left: "còn {h} giờ", overdue: "quá hạn {h} giờ", reporters: "{n} người",
    sprint: "Xử lý phản ánh đúng hạn (30 ngày)", emergency: "Khẩn",
    incidents: "Sự cố", no_incidents: "Không có sự cố đang xử lý", members: "{n} cảnh báo, phản ánh",
    steps: "{done}/{total} bước", steps_late: "{n} bước quá hạn", checklist: "Quy trình", tick: "Xong",
    approve: "Duyệt", approved: "đã duyệt", responding: "Đang ứng phó", stabilised: "Đã ổn định",
    closed: "Đã đóng", exercise: "DIỄN TẬP", state_next: "Chuyển trạng thái", note: "Ghi chú",
    new_incident: "Sự cố mới", city_tier: "thành phố", ward_tier: "phường, xã",
  },
  en: {
    title: "Da Nang Intelligent Operations Centre",
    ward_title: "Ward operations room",
    login: "Log in", username: "Username", password: "Password", logout: "Log out",
    wrong_login: "Wrong username or password",
    live: "Live", connecting: "Connecting…", reconnecting: "Connection lost, reconnecting…",
    degraded: "Live, values delayed", stale: "Waiting for the server…",
    alerts: "Alerts", no_alerts: "No alerts", acknowledge: "Acknowledge", resolve: "Resolve",
    open: "Open", acknowledged: "Acknowledged", resolved: "Resolved",
    critical: "Critical", major: "Major", minor: "Minor", info: "Info",
    kpi_open: "Open alerts", kpi_ack: "Median time to acknowledge today", kpi_air: "Worst PM2.5",
    kpi_water: "Highest water level", kpi_traffic: "Vehicles per hour",
    response_week: "Response times (7 days)", ack_median: "Acknowledge (median)", resolve_median: "Resolve (median)",
    history: "Last 24 hours", close: "Close", counts: "Counts", snapshot: "Snapshot", sensors: "sensors", units: "units",
    ago: "ago", just_now: "just now", new_alert: "New alert",
    tickets: "Citizens' reports", no_tickets: "No open reports", accept: "Accept",
    start: "Start work", received: "New", accepted: "Accepted", in_progress: "In progress",
    note_resolve: "What was done:", hours_left: "{h} h left", overdue: "{h} h overdue", reporters: "{n} people",
    sprint: "Reports handled on time (30 days)", emergency: "Emergency",
    incidents: "Incidents", no_incidents: "No incident being worked", members: "{n} alerts and reports",
    steps: "{done}/{total} steps", steps_late: "{n} steps late", checklist: "Checklist", tick: "Done",
    approve: "Approve", approved: "approved", responding: "Responding", stabilised: "Stabilised",
    closed: "Closed", exercise: "EXERCISE", state_next: "Move to", note: "Note",
    new_incident: "New incident", city_tier: "city", ward_tier: "ward",
  },
};

const LOCALES = { vi: "vi-VN", en: "en-GB" };
const UNITS = { pm25: "µg/m³", pm10: "µg/m³", no2: "µg/m³", level_m: "m", rain_mm_h: "mm/h", laeq_db: "dBA",
                speed_kmh: "km/h", power_w: "W", occupancy: "%" };

export let lang = localStorage.getItem("ioc-lang") || "vi";

export function setLang(next) {
  lang = next;
  localStorage.setItem("ioc-lang", next);
  document.documentElement.lang = next;
}

export const t = (key) => WORDS[lang][key] ?? key;

export function number(value, digits = 1) {
  return new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: digits }).format(value);
}

export function measure(metric, value) {
  if (metric === "occupancy") return `${number(value * 100, 0)} %`;
  const unit = UNITS[metric];
  const digits = metric === "level_m" ? 2 : 1;
  return unit ? `${number(value, digits)} ${unit}` : number(value, digits);
}

export function time(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .format(new Date(iso));
}

export function dateTime(iso) {
  return new Intl.DateTimeFormat(LOCALES[lang], { dateStyle: "short", timeStyle: "short" }).format(new Date(iso));
}

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const rtf = new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: 0 });
  if (seconds < 90) return `${rtf.format(seconds)} s`;
  if (seconds < 5400) return `${rtf.format(seconds / 60)} ${lang === "vi" ? "phút" : "min"}`;
  return `${number(seconds / 3600, 1)} ${lang === "vi" ? "giờ" : "h"}`;
}

export function age(iso) {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  return seconds < 20 ? t("just_now") : `${duration(seconds)} ${t("ago")}`;
}
